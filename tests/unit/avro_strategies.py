"""Hypothesis strategies for Avro data, and the helpers to predict what fastavro reads back.

``records(schema)`` builds valid Python data for any Avro schema the contracts use, in the forms a
writer accepts: records, enums, arrays, maps, fixed, unions (``['null', T]`` and wider), the
primitives, and the logical types ``date`` (int days or ``datetime.date``) and ``timestamp-millis``
(int milliseconds or an aware ``datetime``). Named types may be referenced by name after their
first definition (fastavro's parsed form writes ``"pora.Identity"`` the second time), so the
walk keeps a dict of named types; recursive types work through ``st.deferred``.

``decoded(schema, datum)`` is the value fastavro's reader returns for ``datum`` written with
``schema``; ``read_as(writer, reader, datum)`` the value read with another (compatible) reader
schema, following the Avro specification's resolution rules.
"""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st

Schema = Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DATE = date(1970, 1, 1)
# Ranges that Python's date and datetime (and so fastavro's logical readers) can represent.
MIN_DATE, MAX_DATE = date(1, 1, 2), date(9999, 12, 30)
MIN_DAYS, MAX_DAYS = (MIN_DATE - EPOCH_DATE).days, (MAX_DATE - EPOCH_DATE).days
MIN_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
MAX_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)
MIN_MILLIS = (MIN_INSTANT - EPOCH) // timedelta(milliseconds=1)
MAX_MILLIS = (MAX_INSTANT - EPOCH) // timedelta(milliseconds=1)
INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)

# UTC offsets as they occur on Earth: whole minutes within +-14 h.
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
AWARE_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.one_of(st.just(UTC), OFFSETS)
)


def full_name(name: str, namespace: str | None) -> str:
    """Avro's rule: a dotted name is already full; otherwise it lives in the enclosing namespace."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _namespace_of(fullname: str) -> str:
    return fullname.rpartition(".")[0]


T = TypeVar("T")


def _lookup(name: str, named: dict[str, T], namespace: str) -> T:
    for candidate in (full_name(name, namespace), name):
        if candidate in named:
            return named[candidate]
    raise ValueError(f"named type {name!r} is used before it is defined (known: {', '.join(sorted(named))})")


# ---------------------------------------------------------------- the strategy


def records(schema: Schema, *, max_items: int = 3, max_text: int = 12) -> st.SearchStrategy[Any]:
    """Valid data for ``schema`` (any fully parsed Avro schema of the contracts)."""
    named: dict[str, st.SearchStrategy[Any]] = {}
    return _strategy(schema, named, "", max_items, max_text)


def _strategy(
    schema: Schema, named: dict[str, st.SearchStrategy[Any]], namespace: str, max_items: int, max_text: int
) -> st.SearchStrategy[Any]:
    def sub(s: Schema, ns: str = namespace) -> st.SearchStrategy[Any]:
        return _strategy(s, named, ns, max_items, max_text)

    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return _primitive(schema, max_text)
        return _lookup(schema, named, namespace)
    if isinstance(schema, list):
        return st.one_of([sub(branch) for branch in schema])
    kind = schema["type"]
    if isinstance(kind, dict | list):  # {"type": {...}} wraps a schema
        return sub(kind)
    if kind in ("record", "error"):
        name = full_name(schema["name"], schema.get("namespace", namespace))
        built: dict[str, st.SearchStrategy[Any]] = {}
        named[name] = st.deferred(lambda: built["it"])  # a field may refer to the record itself
        fields = {f["name"]: sub(f["type"], _namespace_of(name)) for f in schema["fields"]}
        built["it"] = st.fixed_dictionaries(fields)
        return built["it"]
    if kind == "enum":
        strategy: st.SearchStrategy[Any] = st.sampled_from(list(schema["symbols"]))
        named[full_name(schema["name"], schema.get("namespace", namespace))] = strategy
        return strategy
    if kind == "fixed":
        size = int(schema["size"])
        strategy = st.binary(min_size=size, max_size=size)
        named[full_name(schema["name"], schema.get("namespace", namespace))] = strategy
        return strategy
    if kind == "array":
        return st.lists(sub(schema["items"]), max_size=max_items)
    if kind == "map":
        return st.dictionaries(st.text(max_size=max_text), sub(schema["values"]), max_size=max_items)
    if kind in PRIMITIVES:
        logical = schema.get("logicalType")
        if logical is None:
            return _primitive(kind, max_text)
        if logical == "date" and kind == "int":
            return st.one_of(st.integers(MIN_DAYS, MAX_DAYS), st.dates(MIN_DATE, MAX_DATE))
        if logical == "timestamp-millis" and kind == "long":
            return st.one_of(st.integers(MIN_MILLIS, MAX_MILLIS), AWARE_DATETIMES)
        raise ValueError(f"logical type {logical!r} on {kind} is not supported by these strategies")
    if isinstance(kind, str) and kind not in NAMED:  # {"type": "pora.Identity"}
        return _lookup(kind, named, namespace)
    raise ValueError(f"schema type {kind!r} is not supported by these strategies")


def _primitive(kind: str, max_text: int) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "int":
        return st.integers(*INT_RANGE)
    if kind == "long":
        return st.integers(*LONG_RANGE)
    if kind == "float":
        return st.floats(width=32, allow_nan=False)
    if kind == "double":
        return st.floats(allow_nan=False)
    if kind == "bytes":
        return st.binary(max_size=max_text)
    if kind == "string":
        return st.text(max_size=max_text)
    raise ValueError(f"{kind!r} is not an Avro primitive")


# ---------------------------------------------------------------- expanding named references


def expand(schema: Schema) -> Schema:
    """A copy of ``schema`` with every reference to a named type replaced by its definition, and
    every name made full. Recursive types cannot be expanded (ValueError)."""
    return _expand(schema, {}, "", ())


def _expand(schema: Schema, named: dict[str, Schema], namespace: str, stack: tuple[str, ...]) -> Schema:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        target = _lookup(schema, named, namespace)
        if target["name"] in stack:
            raise ValueError(f"{schema!r} is recursive and cannot be expanded")
        return target
    if isinstance(schema, list):
        return [_expand(b, named, namespace, stack) for b in schema]
    kind = schema["type"]
    if isinstance(kind, dict | list):
        return _expand(kind, named, namespace, stack)
    if kind in NAMED:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        out = {k: v for k, v in schema.items() if k != "namespace"}
        out["name"] = name
        named[name] = out
        if kind in ("record", "error"):
            out["fields"] = [
                {**f, "type": _expand(f["type"], named, _namespace_of(name), (*stack, name))} for f in schema["fields"]
            ]
        return out
    if kind == "array":
        return {**schema, "items": _expand(schema["items"], named, namespace, stack)}
    if kind == "map":
        return {**schema, "values": _expand(schema["values"], named, namespace, stack)}
    if kind in PRIMITIVES:
        return schema
    return _expand(kind, named, namespace, stack)  # {"type": "pora.Identity"}


# ---------------------------------------------------------------- what the reader returns


def _type_of(schema: Schema) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


def _logical(schema: Schema) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def fits(schema: Schema, datum: Any) -> bool:
    """Whether ``datum`` is a value of (expanded) ``schema``; picks the branch of a union."""
    kind = _type_of(schema)
    logical = _logical(schema)
    if logical == "date":
        return (isinstance(datum, int) and not isinstance(datum, bool)) or (
            isinstance(datum, date) and not isinstance(datum, datetime)
        )
    if logical == "timestamp-millis":
        return (isinstance(datum, int) and not isinstance(datum, bool)) or isinstance(datum, datetime)
    if kind == "union":
        return any(fits(b, datum) for b in schema)
    checks: dict[str, Any] = {
        "null": lambda: datum is None,
        "boolean": lambda: isinstance(datum, bool),
        "int": lambda: isinstance(datum, int) and not isinstance(datum, bool),
        "long": lambda: isinstance(datum, int) and not isinstance(datum, bool),
        "float": lambda: isinstance(datum, float | int) and not isinstance(datum, bool),
        "double": lambda: isinstance(datum, float | int) and not isinstance(datum, bool),
        "bytes": lambda: isinstance(datum, bytes),
        "string": lambda: isinstance(datum, str),
        "enum": lambda: isinstance(datum, str) and datum in schema["symbols"],
        "fixed": lambda: isinstance(datum, bytes) and len(datum) == schema["size"],
        "array": lambda: isinstance(datum, list),
        "map": lambda: isinstance(datum, dict),
        "record": lambda: isinstance(datum, dict) and {f["name"] for f in schema["fields"]} >= datum.keys(),
        "error": lambda: isinstance(datum, dict) and {f["name"] for f in schema["fields"]} >= datum.keys(),
    }
    return bool(checks[kind]()) if kind in checks else False


def _branch(union: list[Schema], datum: Any) -> Schema:
    for branch in union:
        if fits(branch, datum):
            return branch
    raise ValueError(f"{datum!r} fits no branch of {union!r}")


def decoded(schema: Schema, datum: Any) -> Any:
    """The value fastavro reads back for ``datum`` written with ``schema`` (same schema both sides)."""
    expanded = expand(schema)
    return read_as(expanded, expanded, datum)


def _as_instant(datum: int | datetime) -> datetime:
    if isinstance(datum, datetime):
        # the writer keeps whole milliseconds, rounding down (timedelta's microseconds are >= 0)
        delta = datum - EPOCH
        return EPOCH + timedelta(days=delta.days, seconds=delta.seconds, milliseconds=delta.microseconds // 1000)
    return EPOCH + timedelta(milliseconds=datum)


def _as_date(datum: int | date) -> date:
    return datum if isinstance(datum, date) else EPOCH_DATE + timedelta(days=datum)


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def read_as(writer: Schema, reader: Schema, datum: Any) -> Any:
    """The value a reader with (expanded) ``reader`` gets for ``datum`` written with (expanded) ``writer``.

    Follows the Avro specification's resolution rules: fields matched by name or alias, missing ones
    filled from defaults, writer's extra fields dropped, enum symbols unknown to the reader replaced
    by its default, numeric promotions, and logical types as fastavro returns them.
    """
    if isinstance(writer, list):
        writer = _branch(writer, datum)
    if isinstance(reader, list):
        for branch in reader:  # the first branch that matches the writer's type
            if _type_of(branch) == _type_of(writer) and (
                _type_of(branch) not in NAMED or _short(branch["name"]) == _short(writer["name"])
            ):
                reader = branch
                break
        else:
            reader = next(b for b in reader if _promotes(_type_of(writer), _type_of(b)))
    wt, rt = _type_of(writer), _type_of(reader)
    logical = _logical(reader)
    if logical == "timestamp-millis":
        return _as_instant(datum)
    if logical == "date":
        return _as_date(datum)
    if rt in ("record", "error"):
        written = {f["name"]: f for f in writer["fields"]}
        out: dict[str, Any] = {}
        for field in reader["fields"]:
            source = next((written[n] for n in (field["name"], *field.get("aliases", ())) if n in written), None)
            if source is None:
                out[field["name"]] = _default(field["type"], field["default"])
            else:
                out[field["name"]] = read_as(source["type"], field["type"], datum[source["name"]])
        return out
    if rt == "enum":
        return datum if datum in reader["symbols"] else reader["default"]
    if rt == "array":
        return [read_as(writer["items"], reader["items"], v) for v in datum]
    if rt == "map":
        return {k: read_as(writer["values"], reader["values"], v) for k, v in datum.items()}
    if rt in ("float", "double") and wt in ("int", "long", "float", "double"):
        value = float(datum)
        return struct.unpack("<f", struct.pack("<f", value))[0] if rt == "float" and wt != "float" else value
    if rt == "string" and wt == "bytes":
        return datum.decode()
    if rt == "bytes" and wt == "string":
        return datum.encode()
    return datum


def _promotes(wt: str, rt: str) -> bool:
    return rt in {
        "int": {"int", "long", "float", "double"},
        "long": {"long", "float", "double"},
        "float": {"float", "double"},
        "string": {"string", "bytes"},
        "bytes": {"bytes", "string"},
    }.get(wt, {wt})


def _default(schema: Schema, default: Any) -> Any:
    """A field default as the reader returns it (a union's default is of its first branch)."""
    if isinstance(schema, list):
        schema = schema[0]
    return read_as(schema, schema, default)
