"""What a request is made of: items as received, and why one was refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.validation import FieldError


@dataclass(frozen=True, slots=True)
class Item:
    """One event as received, with its raw bytes for the dead-letter topic (serialised from
    ``value`` only when it is rejected, when not given)."""

    value: Any
    raw: bytes | None = None
    label: str = ""  # how to point at it: "[3]" in a JSON batch, "row 7" in a CSV register
    problems: tuple[FieldError, ...] = ()  # found before validation (e.g. a CSV cell)

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        try:
            return orjson.dumps(self.value)
        except TypeError:
            return repr(self.value).encode()


@dataclass
class Rejection:
    index: int
    label: str
    reason: str  # invalid | forbidden | conflict
    errors: list[FieldError]
    raw: bytes = b""

    def as_dicts(self) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"index": self.index}
        if self.label:
            base["item"] = self.label
        return [{**base, "reason": self.reason, **e.as_dict()} for e in self.errors]
