"""API keys: the key file, authentication, and what each kind of source may send for whom."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.gateway.keys import BINDINGS, KeyFileError, KeyRing, Source, hash_key, key_entry, new_key
from schemas.validation import INGESTED_KINDS

HOTEL_KEY = "pora_hotel-secret"
CHECKPOINT_KEY = "pora_checkpoint-secret"
SYSTEM_KEY = "pora_system-secret"
SHA = "0" * 64


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(
        key_entry(
            "hotel-harmoni-batam",
            "hotel",
            "EST-BTM-0001",
            HOTEL_KEY,
            name="Hotel Harmoni One",
            region="Kota Batam",
            office="KANIM-BATAM",
            utc_offset="",
        )
        + key_entry("tpi-batam-centre", "checkpoint", "TPI-BATAM-CENTRE", CHECKPOINT_KEY)
        + key_entry("replay", "system", "", SYSTEM_KEY)
    )
    return path


@pytest.fixture
def ring(key_file: Path) -> KeyRing:
    return KeyRing.load(key_file)


def test_the_file_holds_only_hashes_of_the_keys(key_file: Path) -> None:
    text = key_file.read_text()
    for key in (HOTEL_KEY, CHECKPOINT_KEY, SYSTEM_KEY):
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() in text


def test_a_good_key_authenticates_as_its_source(ring: KeyRing) -> None:
    assert len(ring) == 3
    hotel = ring.authenticate(HOTEL_KEY)
    assert hotel == Source(
        id="hotel-harmoni-batam",
        kind="hotel",
        binds="EST-BTM-0001",
        profile=(("name", "Hotel Harmoni One"), ("region", "Kota Batam"), ("office", "KANIM-BATAM")),
    )
    assert hotel.attribute("region") == "Kota Batam"
    assert hotel.attribute("utc_offset", "+07:00") == "+07:00"  # empty values are not written
    checkpoint = ring.authenticate(CHECKPOINT_KEY)
    assert checkpoint is not None and (checkpoint.id, checkpoint.kind, checkpoint.binds) == (
        "tpi-batam-centre",
        "checkpoint",
        "TPI-BATAM-CENTRE",
    )
    system = ring.authenticate(SYSTEM_KEY)
    assert system is not None and (system.id, system.kind, system.binds) == ("replay", "system", "")


@pytest.mark.parametrize("key", [None, "", "pora_wrong", HOTEL_KEY + " ", HOTEL_KEY.upper(), hash_key(HOTEL_KEY)])
def test_a_bad_key_does_not_authenticate(ring: KeyRing, key: str | None) -> None:
    assert ring.authenticate(key) is None


def test_new_keys_are_unique_and_prefixed() -> None:
    keys = {new_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(k.startswith("pora_") and len(k) >= 30 for k in keys)


# ---------------------------------------------------------------- what a source may send for whom

EXAMPLES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    # source kind: (event kind, bound id, record for another, path of the bound field)
    "hotel": (
        "hotel_guest_event",
        "EST-1",
        {"establishment": {"establishment_id": "EST-2"}},
        "establishment.establishment_id",
    ),
    "checkpoint": ("border_crossing", "TPI-1", {"checkpoint": {"checkpoint_id": "TPI-2"}}, "checkpoint.checkpoint_id"),
    "sponsor": ("sponsor_report", "SPN-1", {"sponsor": {"sponsor_id": "SPN-2"}}, "sponsor.sponsor_id"),
    "agency": ("agency_report", "AGY-1", {"agency": {"agency_id": "AGY-2"}}, "agency.agency_id"),
    "office": ("permit_update", "KANIM-1", {"office": "KANIM-2"}, "office"),
}


@pytest.mark.parametrize("kind", EXAMPLES)
def test_a_bound_key_reporting_for_someone_else_is_named(kind: str) -> None:
    event_kind, binds, other, path = EXAMPLES[kind]
    source = Source(id="s", kind=kind, binds=binds)
    other_id = other
    for part in path.split("."):
        other_id = other_id[part]
    found = source.foreign_binding(event_kind, other)
    assert found is not None
    field, problem = found
    assert field == path
    assert problem == f"is {other_id!r}, but this key reports only for {binds!r}"


@pytest.mark.parametrize("kind", EXAMPLES)
def test_a_bound_key_reporting_for_itself_passes(kind: str) -> None:
    event_kind, binds, _, path = EXAMPLES[kind]
    record: dict[str, Any] = {}
    target = record
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = binds
    assert Source(id="s", kind=kind, binds=binds).foreign_binding(event_kind, record) is None


def test_a_record_without_the_bound_field_is_foreign() -> None:
    source = Source(id="s", kind="hotel", binds="EST-1")
    assert source.foreign_binding("hotel_guest_event", {}) == (
        "establishment.establishment_id",
        "is None, but this key reports only for 'EST-1'",
    )
    assert source.foreign_binding("hotel_guest_event", {"establishment": "EST-1"}) is not None


def test_the_binding_examples_cover_every_bound_kind() -> None:
    assert set(EXAMPLES) == set(BINDINGS) - {"system"}
    assert {e[0] for e in EXAMPLES.values()} == set(INGESTED_KINDS)


@pytest.mark.parametrize("kind", EXAMPLES)
def test_a_bound_key_may_send_only_its_own_event_kind(kind: str) -> None:
    source = Source(id="s", kind=kind, binds="X")
    assert [k for k in INGESTED_KINDS if source.may_send(k)] == [EXAMPLES[kind][0]]
    assert not source.may_send("alert")
    assert not source.trusted_clock


def test_a_system_key_may_send_every_kind_for_anyone_and_has_a_trusted_clock(ring: KeyRing) -> None:
    system = ring.authenticate(SYSTEM_KEY)
    assert system is not None
    assert all(system.may_send(k) for k in INGESTED_KINDS)
    for event_kind, _, other, _ in EXAMPLES.values():
        assert system.foreign_binding(event_kind, other) is None
    assert system.trusted_clock


# ---------------------------------------------------------------- malformed key files


def entry(**fields: Any) -> str:
    lines = []
    for name, value in fields.items():
        lines.append(f"{name} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{name} = {value}")
    return "[[source]]\n" + "\n".join(lines) + "\n\n"


GOOD = entry(id="a", kind="hotel", binds="EST-1", key_sha256=hash_key("k1"))


@pytest.mark.parametrize(
    ("second", "message"),
    [
        pytest.param(entry(kind="hotel", binds="EST-2", key_sha256=SHA), "source #2: missing id", id="no-id"),
        pytest.param(entry(id="b", binds="EST-2", key_sha256=SHA), "source #2: missing kind", id="no-kind"),
        pytest.param(entry(id="b", kind="hotel", binds="EST-2"), "source #2: missing key_sha256", id="no-hash"),
        pytest.param(entry(id="", kind="", binds="EST-2"), "source #2: missing id, kind, key_sha256", id="all-empty"),
        pytest.param(
            entry(id="b", kind="hostel", binds="EST-2", key_sha256=SHA),
            "source #2: kind 'hostel' is not one of hotel, checkpoint, sponsor, agency, office, system",
            id="unknown-kind",
        ),
        pytest.param(
            entry(id="b", kind="sponsor", key_sha256=SHA),
            "source #2: a sponsor key must name what it binds to ('binds')",
            id="unbound",
        ),
        pytest.param(
            entry(id="b", kind="hotel", binds="EST-2", key_sha256="abc"),
            "source #2: key_sha256 must be 64 hex digits",
            id="short-hash",
        ),
        pytest.param(
            entry(id="b", kind="hotel", binds="EST-2", key_sha256="g" * 64),
            "source #2: key_sha256 must be 64 hex digits",
            id="not-hex",
        ),
        pytest.param(
            entry(id="b", kind="hotel", binds="EST-2", key_sha256=hash_key("k1").upper()),
            "source #2: the same key is listed twice",
            id="duplicate-key",
        ),
        pytest.param(
            entry(id="b", kind=["hotel"], binds="EST-2", key_sha256=SHA), "source #2: kind", id="kind-not-a-string"
        ),
    ],
)
def test_a_malformed_entry_is_named(tmp_path: Path, second: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(GOOD + second)
    with pytest.raises(KeyFileError) as exc:
        KeyRing.load(path)
    assert str(exc.value).startswith(f"{path}: {message}")


def test_the_good_entry_alone_loads(tmp_path: Path) -> None:  # the failures above are the second entry's
    path = tmp_path / "keys.toml"
    path.write_text(GOOD)
    assert len(KeyRing.load(path)) == 1


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(GOOD + "[[source]\nid = ")
    with pytest.raises(KeyFileError, match=f"API key file {path} is not valid TOML"):
        KeyRing.load(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(KeyFileError, match=f"API key file {path} does not exist"):
        KeyRing.load(path)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(GOOD.replace("[[source]]", "[source]"), id="table-instead-of-array-of-tables"),
        pytest.param('source = "hotel"\n', id="string"),
        pytest.param("source = [1, 2]\n", id="array-of-numbers"),
    ],
)
def test_a_source_section_of_the_wrong_shape_is_a_key_file_error(tmp_path: Path, body: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(body)
    with pytest.raises(KeyFileError, match="source"):
        KeyRing.load(path)


def test_an_empty_file_loads_no_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("")
    ring = KeyRing.load(path)
    assert len(ring) == 0
    assert ring.authenticate(HOTEL_KEY) is None


def test_key_entry_refuses_an_unknown_kind() -> None:
    with pytest.raises(KeyFileError, match="kind 'hostel' is not one of"):
        key_entry("a", "hostel", "EST-1", "k")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source_id=st.text(min_size=1, max_size=20),
    binds=st.text(min_size=1, max_size=20),
    name=st.text(max_size=20),
    key=st.text(min_size=1, max_size=30),
)
def test_key_entry_round_trips_any_text(tmp_path: Path, source_id: str, binds: str, name: str, key: str) -> None:
    # an operator's typo in `pora keys add --name` must not break the key file for every other source
    path = tmp_path / "keys.toml"
    path.write_text(key_entry(source_id, "hotel", binds, key, name=name), encoding="utf-8")
    ring = KeyRing.load(path)
    source = ring.authenticate(key)
    assert source is not None
    assert (source.id, source.binds, source.attribute("name")) == (source_id, binds, name)


def test_a_bad_utc_offset_is_refused_when_the_key_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(key_entry("h", "hotel", "EST-1", "k", utc_offset="7"))
    with pytest.raises(KeyFileError, match="utc_offset '7' is not like"):
        KeyRing.load(path)
    path.write_text(key_entry("h", "hotel", "EST-1", "k", utc_offset="+08:00"))
    assert KeyRing.load(path).authenticate("k") is not None
