"""API keys: each one belongs to one source and is bound to the one establishment, checkpoint,
sponsor, agency or office it may report for.

The key file (TOML) holds only SHA-256 hashes of the keys, so a leaked file posts nothing::

    [[source]]
    id = "hotel-harmoni-batam"
    kind = "hotel"                      # hotel | checkpoint | sponsor | agency | office | system
    binds = "EST-BTM-0001"              # the establishment_id (checkpoint_id, sponsor_id, agency_id, office)
    key_sha256 = "9f86d08..."

A ``system`` source (replay of archives, the simulator) may post any kind for anyone and may set
``reported_at``; give it only to trusted components.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class KeyFileError(ValueError):
    pass


# For each kind of source: the event kinds it may send, and where the bound id sits in them.
BINDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "hotel": {"hotel_guest_event": ("establishment", "establishment_id")},
    "checkpoint": {"border_crossing": ("checkpoint", "checkpoint_id")},
    "sponsor": {"sponsor_report": ("sponsor", "sponsor_id")},
    "agency": {"agency_report": ("agency", "agency_id")},
    "office": {"permit_update": ("office",)},
    "system": {},
}
SYSTEM = "system"


@dataclass(frozen=True)
class Source:
    id: str
    kind: str
    binds: str  # empty for system sources
    # Registry facts about what the key is bound to, used to complete CSV registers:
    # name, region, office of an establishment; utc_offset of its local clock.
    profile: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str, default: str = "") -> str:
        return dict(self.profile).get(name, default)

    @property
    def trusted_clock(self) -> bool:
        return self.kind == SYSTEM

    def may_send(self, event_kind: str) -> bool:
        return self.kind == SYSTEM or event_kind in BINDINGS[self.kind]

    def foreign_binding(self, event_kind: str, record: dict[str, Any]) -> tuple[str, str] | None:
        """(field path, problem) when ``record`` reports for someone else, else None."""
        if self.kind == SYSTEM:
            return None
        path = BINDINGS[self.kind][event_kind]
        value: Any = record
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value != self.binds:
            return ".".join(path), f"is {value!r}, but this key reports only for {self.binds!r}"
        # the office an alert is routed to comes from the registry when the key file has it, so a
        # source cannot send its alerts (or another's attention) to another office
        office = self.attribute("office")
        entity = record.get(path[0]) if len(path) == 2 else None
        if office and isinstance(entity, dict) and "office" in entity and entity["office"] != office:
            return f"{path[0]}.office", f"is {entity['office']!r}, but {self.binds!r} is registered with {office!r}"
        return None


def hash_key(key: str) -> str:
    # surrogatepass: aiohttp hands header bytes that are not UTF-8 over as lone surrogates
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return "pora_" + secrets.token_urlsafe(24)


class KeyRing:
    def __init__(self, sources: dict[str, Source]) -> None:
        self._by_hash = sources  # sha256 hex -> source

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, key: str | None) -> Source | None:
        if not key:
            return None
        # Looked up by SHA-256 of the key: lookup timing can only reveal hashes, never key bytes.
        return self._by_hash.get(hash_key(key))

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyFileError(f"API key file {path} does not exist (set PORA_GATEWAY_KEYS_FILE)") from None
        except UnicodeDecodeError as exc:
            raise KeyFileError(f"API key file {path} is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise KeyFileError(f"API key file {path} cannot be read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise KeyFileError(f"API key file {path} is not valid TOML: {exc}") from None
        sources: dict[str, Source] = {}
        entries = data.get("source", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise KeyFileError(f"{path}: 'source' must be an array of tables, each entry starting with [[source]]")
        for i, entry in enumerate(entries):
            where = f"{path}: source #{i + 1}"
            missing = [f for f in ("id", "kind", "key_sha256") if not entry.get(f)]
            if missing:
                raise KeyFileError(f"{where}: missing {', '.join(missing)}")
            for name in ("id", "binds", "key_sha256", "name", "region", "office", "utc_offset"):
                if name in entry and not isinstance(entry[name], str):
                    raise KeyFileError(f"{where}: {name} must be a string, not {type(entry[name]).__name__}")
            kind = entry["kind"]
            if not isinstance(kind, str) or kind not in BINDINGS:
                raise KeyFileError(f"{where}: kind {kind!r} is not one of {', '.join(BINDINGS)}")
            if kind != SYSTEM and not entry.get("binds"):
                raise KeyFileError(f"{where}: a {kind} key must name what it binds to ('binds')")
            digest = str(entry["key_sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise KeyFileError(f"{where}: key_sha256 must be 64 hex digits")
            if digest in sources:
                raise KeyFileError(f"{where}: the same key is listed twice")
            profile = tuple((k, str(entry[k])) for k in ("name", "region", "office", "utc_offset") if entry.get(k))
            offset = dict(profile).get("utc_offset")
            if offset is not None and not re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", offset):
                raise KeyFileError(f"{where}: utc_offset {offset!r} is not like +07:00")
            sources[digest] = Source(id=str(entry["id"]), kind=kind, binds=str(entry.get("binds", "")), profile=profile)
        return cls(sources)


def key_entry(source_id: str, kind: str, binds: str, key: str, **profile: str) -> str:
    """A TOML entry for the key file."""
    if kind not in BINDINGS:
        raise KeyFileError(f"kind {kind!r} is not one of {', '.join(BINDINGS)}")
    lines = [f"id = {_toml_str(source_id)}", f"kind = {_toml_str(kind)}", f"binds = {_toml_str(binds)}"]
    lines += [f"{k} = {_toml_str(v)}" for k, v in profile.items() if v]
    lines.append(f'key_sha256 = "{hash_key(key)}"')
    return "[[source]]\n" + "\n".join(lines) + "\n\n"


def _toml_str(value: str) -> str:
    # JSON's escapes are TOML's; TOML also forbids a raw DEL
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
