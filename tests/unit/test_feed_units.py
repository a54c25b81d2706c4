"""Feed pieces without services: passwords, tokens, sessions, CSRF, scoping, triage state."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from connectors.feed.board import AlertBoard, Filters
from connectors.feed.sessions import Sessions
from connectors.feed.users import User, UserStore, check_password, ensure_demo_users, hash_password, token_hash


def test_passwords_are_salted_scrypt_hashes() -> None:
    a, b = hash_password("s3cret"), hash_password("s3cret")
    assert a != b and a.startswith("scrypt$") and "s3cret" not in a
    assert check_password("s3cret", a) and not check_password("s3cret!", a)
    assert not check_password("s3cret", "md5$00$00")


def test_user_store_round_trip_login_and_tokens(tmp_path: Path) -> None:
    store = UserStore()
    store.add(User("ana", "supervisor", frozenset({"KANIM-BATAM"}), frozenset(), hash_password("pw"), token_hash("t1")))
    path = tmp_path / "users.toml"
    store.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = UserStore.load(path)
    assert again.login("ana", "pw") == store.users["ana"]
    assert again.login("ana", "nope") is None and again.login("bob", "pw") is None
    assert again.by_token("t1") == store.users["ana"] and again.by_token("t2") is None


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        (User("x", "boss"), "role 'boss'"),
        (User("x", "supervisor"), "needs at least one office"),
        (User("x", "agency", frozenset({"KANIM-BATAM"})), "needs the rules"),
        (User('x"y', "admin"), "letters, digits"),
        (User("x", "supervisor", frozenset({"KANIM BATAM"})), "office 'KANIM BATAM'"),
    ],
)
def test_bad_users_are_refused_with_the_reason(user: User, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        UserStore().add(user)


def test_demo_users_keep_their_passwords_in_a_private_file(tmp_path: Path) -> None:
    passwords = ensure_demo_users(tmp_path / "users.toml", tmp_path / "demo-users.json")
    store = UserStore.load(tmp_path / "users.toml")
    assert store.login("supervisor-batam", passwords["supervisor-batam"]) is not None
    assert oct((tmp_path / "demo-users.json").stat().st_mode & 0o777) == "0o600"
    assert ensure_demo_users(tmp_path / "users.toml", tmp_path / "demo-users.json") == passwords


def test_sessions_reject_tampering_and_expiry_and_bind_csrf_to_the_session() -> None:
    s = Sessions(b"k" * 32, hours=1)
    token = s.issue("ana", now=1000)
    user, nonce = s.verify(token, now=1001) or ("", "")
    assert user == "ana"
    assert s.verify(token, now=1000 + 3601) is None  # expired
    encoded, mac = token.rsplit(".", 1)
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(encoded).replace(b"ana", b"bob")).decode()
    assert s.verify(f"{forged}.{mac}", now=1001) is None  # another user under the same signature
    assert Sessions(b"other" * 8, hours=1).verify(token, now=1001) is None
    assert s.check_csrf(nonce, s.csrf(nonce)) and not s.check_csrf(nonce, "0" * 40) and not s.check_csrf(nonce, None)
    other_nonce = (s.verify(s.issue("ana", now=1000), now=1001) or ("", ""))[1]
    assert not s.check_csrf(other_nonce, s.csrf(nonce))


def record(aid: str, office: str, rule: str, status: str = "RAISED", step: int = 0, at: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"{aid}:{status.lower()}:{step}",
        "occurred_at": at,
        "reported_at": at,
        "alert_id": aid,
        "rule_id": rule,
        "rule_version": "v",
        "status": status,
        "severity": "HIGH",
        "office": office,
        "subject": {"person_key": "pk_1", "establishment_id": None, "sponsor_id": None, "checkpoint_id": None},
        "window_start": None,
        "window_end": None,
        "evidence": [{"name": "window", "value": "w", "event_id": None, "weight": None}],
        "reasons": ["why"],
    }


def action(aid: str, kind: str, n: int, disposition: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"act-{aid}-{n}",
        "occurred_at": n,
        "reported_at": n,
        "alert_id": aid,
        "rule_id": "overstay",
        "office": "KANIM-BATAM",
        "action": kind,
        "actor": "ana",
        "actor_role": "supervisor",
        "assignee": None,
        "disposition": disposition,
        "comment": None,
    }


def test_board_scopes_by_office_and_role_and_hides_person_keys_from_agencies() -> None:
    board = AlertBoard()
    board.apply_alert(record("A", "KANIM-BATAM", "overstay"))
    board.apply_alert(record("B", "KANIM-MEDAN", "overstay"))
    board.apply_alert(record("C", "KANIM-BATAM", "tppo.screening"))
    batam = User("s", "supervisor", frozenset({"KANIM-BATAM"}))
    police = User("p", "agency", frozenset({"KANIM-BATAM"}), frozenset({"tppo.screening"}))
    admin = User("a", "admin")
    assert {a.alert_id for a in board.visible(batam)} == {"A", "C"}
    assert [a.alert_id for a in board.visible(police)] == ["C"]
    assert len(board.visible(admin)) == 3
    assert "person_key" not in board.alerts["C"].view(police)["subject"]
    assert board.alerts["C"].view(batam)["subject"]["person_key"] == "pk_1"
    assert board.counts(batam, Filters(rule="overstay")) == {"overstay": 1}
    assert not police.may("RESOLVE") and police.may("COMMENT") and batam.may("RESOLVE")


def test_triage_state_follows_the_actions_even_when_they_come_before_their_alert() -> None:
    board = AlertBoard()
    board.apply_action(action("A", "ACKNOWLEDGE", 1))  # read before its alert: kept, not lost
    board.apply_alert(record("A", "KANIM-BATAM", "overstay"))
    assert board.alerts["A"].triage == "ACKNOWLEDGED"
    board.apply_action(action("A", "RESOLVE", 2, "CONFIRMED"))
    board.apply_action(action("A", "RESOLVE", 2, "CONFIRMED"))  # redelivered
    assert board.alerts["A"].triage == "RESOLVED" and len(board.alerts["A"].actions) == 2
    board.apply_action(action("A", "REOPEN", 3))
    assert board.alerts["A"].triage == "OPEN"
    board.apply_alert(record("A", "KANIM-BATAM", "overstay", "WITHDRAWN", 1, at=5))
    assert board.alerts["A"].record["status"] == "WITHDRAWN" and len(board.alerts["A"].history) == 2
    assert Filters(status="WITHDRAWN").match(board.alerts["A"]) and not Filters(status="RAISED").match(
        board.alerts["A"]
    )


def test_the_board_holds_a_horizon_of_event_time_and_open_critical_alerts() -> None:
    day = 86_400_000
    board = AlertBoard(horizon_days=10)
    board.apply_alert(record("OLD", "KANIM-BATAM", "report.late", at=1 * day))
    board.apply_alert(record("CRIT", "KANIM-BATAM", "overstay", at=1 * day) | {"severity": "CRITICAL"})
    board.apply_alert(record("DONE", "KANIM-BATAM", "overstay", at=1 * day) | {"severity": "CRITICAL"})
    board.apply_action(action("DONE", "RESOLVE", 2 * day, "CONFIRMED"))
    board.apply_alert(record("ACTED", "KANIM-BATAM", "report.late", at=1 * day))
    board.apply_action(action("ACTED", "ACKNOWLEDGE", 8 * day))  # an action keeps it as recent as itself
    board.apply_action(action("NEVER", "COMMENT", 1 * day))  # for an alert that never comes
    board.apply_alert(record("NEW", "KANIM-BATAM", "report.late", at=15 * day))
    assert board.sweep() == 2
    assert set(board.alerts) == {"CRIT", "ACTED", "NEW"}
    assert "NEVER" not in board._orphans and "act-DONE-172800000" not in board.actions
    board.apply_alert(record("NEWER", "KANIM-BATAM", "report.late", at=20 * day))
    assert board.sweep() == 1 and set(board.alerts) == {"CRIT", "NEW", "NEWER"} and board.evicted == 3
    # what the board forgot of an evicted alert does not keep it from coming back if it is sent again
    assert board.apply_alert(record("OLD", "KANIM-BATAM", "report.late", at=1 * day)) is not None


def test_an_open_critical_alert_leaves_the_board_after_its_own_longer_horizon() -> None:
    day = 86_400_000
    board = AlertBoard(horizon_days=10, critical_days=30)
    board.apply_alert(record("CRIT", "KANIM-BATAM", "overstay", at=1 * day) | {"severity": "CRITICAL"})
    board.apply_alert(record("SEEN", "KANIM-BATAM", "overstay", at=1 * day) | {"severity": "CRITICAL"})
    board.apply_action(action("SEEN", "ACKNOWLEDGE", 25 * day))  # still open, but looked at later
    board.apply_alert(record("NOW", "KANIM-BATAM", "report.late", at=31 * day))
    assert board.sweep() == 0 and set(board.alerts) == {"CRIT", "SEEN", "NOW"}
    board.apply_alert(record("LATER", "KANIM-BATAM", "report.late", at=32 * day))
    assert board.sweep() == 1 and set(board.alerts) == {"SEEN", "NOW", "LATER"}
    board.apply_alert(record("LATEST", "KANIM-BATAM", "report.late", at=56 * day))
    assert board.sweep() == 3 and set(board.alerts) == {"LATEST"}


def test_the_board_sweeps_itself_as_records_come() -> None:
    board = AlertBoard(horizon_days=1)
    for i in range(3_000):
        board.apply_alert(record(f"A{i}", "KANIM-BATAM", "report.late", at=i * 3_600_000))
    assert len(board.alerts) < 1_100 and len(board._seen) < 1_100  # a day is 24 records; swept every 1000
