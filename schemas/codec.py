"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + Avro binary body.

A consumer tells the writer's schema from the fingerprint, with no registry server. Data written
with an older frozen version is resolved to the current schema of its kind on read.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.encoder import compile_encoder
from schemas.registry import KINDS, Contract, current, history

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class DecodeError(ValueError):
    """Bytes that are not a Pora event; the message says which check failed."""


def _hint(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


def _ms_times(schema: Any) -> Any:
    """A copy of a (parsed) schema whose timestamp-millis fields read as plain longs."""
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return {k: v for k, v in schema.items() if k != "logicalType"}
        return {k: _ms_times(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_ms_times(v) for v in schema]
    return schema


class Codec:
    """Encodes and decodes every event kind; build once and share (schemas are parsed once)."""

    def __init__(self) -> None:
        self._writers: dict[str, Contract] = {k: current(k) for k in KINDS}
        # fastavro re-parses on every call unless given its own parsed form (with its hints)
        self._hinted: dict[str, dict[str, Any]] = {k: _hint(c.parsed) for k, c in self._writers.items()}
        self._encoders = {k: compile_encoder(c.parsed) for k, c in self._writers.items()}
        self._headers = {k: MAGIC + c.fingerprint for k, c in self._writers.items()}
        # fingerprint -> (kind, writer schema, reader schema or None when they are the same)
        self._readers: dict[bytes, tuple[str, dict[str, Any], dict[str, Any] | None]] = {}
        for kind in KINDS:
            now = self._writers[kind]
            for old in history(kind):
                if old.fingerprint != now.fingerprint:
                    self._readers[old.fingerprint] = (kind, _hint(old.parsed), self._hinted[kind])
            self._readers[now.fingerprint] = (kind, self._hinted[kind], None)
        # the same readers with timestamps left as epoch milliseconds (no datetime objects): for
        # consumers that only store them, e.g. the ClickHouse sink
        self._ms_readers = {
            fp: (kind, _hint(_ms_times(w)), None if r is None else _hint(_ms_times(r)))
            for fp, (kind, w, r) in self._readers.items()
        }

    def contract(self, kind: str) -> Contract:
        try:
            return self._writers[kind]
        except KeyError:
            raise KeyError(f"unknown event kind {kind!r}; known: {', '.join(KINDS)}") from None

    def encode(self, kind: str, record: dict[str, Any]) -> bytes:
        contract = self.contract(kind)
        try:
            return self._headers[kind] + self._encoders[kind](record)
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError, struct.error):
            pass  # not a well-formed record: let fastavro say precisely what is wrong
        buf = BytesIO()
        buf.write(MAGIC)
        buf.write(contract.fingerprint)
        schemaless_writer(buf, self._hinted[kind], record)
        return buf.getvalue()

    def kind_of(self, data: bytes) -> str:
        return self._lookup(data)[0]

    def decode(self, data: bytes, *, ms_times: bool = False) -> tuple[str, dict[str, Any]]:
        """Return (kind, record) in the current schema of its kind. ``ms_times``: timestamps as
        epoch milliseconds (ints) instead of datetimes, ~10 % faster."""
        kind, writer, reader = self._lookup(data, self._ms_readers if ms_times else self._readers)
        buf = BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types for truncated or garbled bodies
            raise DecodeError(f"body of a {kind} record does not decode: {exc}") from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after a {kind} record")
        if not isinstance(record, dict):
            raise DecodeError(f"a {kind} record decoded to {type(record).__name__}")
        return kind, record

    def _lookup(
        self, data: bytes, readers: dict[bytes, tuple[str, dict[str, Any], dict[str, Any] | None]] | None = None
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (no C3 01 header)")
        found = (readers or self._readers).get(bytes(data[2:HEADER_LEN]))
        if found is None:
            raise DecodeError(f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
        return found


_shared: Codec | None = None


def codec() -> Codec:
    """The process-wide codec."""
    global _shared
    if _shared is None:
        _shared = Codec()
    return _shared
