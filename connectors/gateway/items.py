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
        except TypeError:  # nested deeper than orjson writes (254 levels), or not JSON at all
            return json_bytes(self.value)


def json_bytes(value: Any) -> bytes:
    """``value`` as compact JSON, however deeply nested (orjson and ``repr`` stop at a depth limit:
    a batch item nested 1,000 levels deep is valid JSON and must still reach the dead letters)."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bytes):  # a piece of output pushed below
            out.append(v)
        elif isinstance(v, dict):
            stack.append(b"}")
            for i, (k, x) in enumerate(reversed(list(v.items()))):
                stack.append(x)
                stack.append(_scalar(str(k)) + b":")
                if i < len(v) - 1:
                    stack.append(b",")
            stack.append(b"{")
        elif isinstance(v, list | tuple):
            stack.append(b"]")
            for i, x in enumerate(reversed(v)):
                stack.append(x)
                if i < len(v) - 1:
                    stack.append(b",")
            stack.append(b"[")
        else:
            out.append(_scalar(v))
    return b"".join(out)


def _scalar(v: Any) -> bytes:
    try:
        return orjson.dumps(v)
    except TypeError:
        return orjson.dumps(repr(v))


@dataclass
class Rejection:
    index: int
    label: str
    reason: str  # invalid | forbidden | conflict | too_large
    errors: list[FieldError]
    raw: bytes = b""

    def as_dicts(self) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"index": self.index}
        if self.label:
            base["item"] = self.label
        return [{**base, "reason": self.reason, **e.as_dict()} for e in self.errors]
