"""BACKWARD compatibility: can a reader with the new schema read data written with the old one?

Follows the Avro specification's schema resolution rules, and names every place that breaks.
"""

from __future__ import annotations

from typing import Any

from schemas.registry import expand_named

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


def _full_name(schema: dict[str, Any]) -> str:
    name = str(schema["name"])
    ns = schema.get("namespace")
    return f"{ns}.{name}" if ns and "." not in name else name


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    aliases = {_short(a) for a in reader.get("aliases", [])}
    return _short(_full_name(writer)) in {_short(_full_name(reader)), *aliases}


def backward_problems(writer: Any, reader: Any) -> list[str]:
    """Problems a reader of ``reader`` would meet on data written with ``writer`` (empty: compatible)."""
    return _problems(expand_named(writer, {}), expand_named(reader, {}), "")


def _problems(writer: Any, reader: Any, path: str = "") -> list[str]:
    """Problems a reader of ``reader`` would meet on data written with ``writer`` (empty: compatible).

    Both schemas must be fully expanded (no references to named types by name only).
    """
    here = path or "<root>"
    wt, rt = _type_name(writer), _type_name(reader)

    if wt == "union":
        problems: list[str] = []
        for branch in writer:
            problems += _problems(branch, reader, path)
        return problems
    if rt == "union":
        for branch in reader:
            if not _problems(writer, branch, path):
                return []
        return [f"{here}: written as {wt}, which no branch of the reader's union accepts"]

    if wt in _PRIMITIVES or rt in _PRIMITIVES:
        if wt in _PRIMITIVES and rt in _PRIMITIVES and rt in _PROMOTIONS.get(wt, {wt}):
            return []
        return [f"{here}: type changed from {wt} to {rt}"]

    if wt != rt:
        return [f"{here}: type changed from {wt} to {rt}"]

    if wt == "record":
        if not _names_match(writer, reader):
            return [f"{here}: record renamed from {_full_name(writer)} to {_full_name(reader)} without alias"]
        problems = []
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            sub = f"{path}.{field['name']}" if path else field["name"]
            names = [field["name"], *field.get("aliases", [])]
            source = next((written[n] for n in names if n in written), None)
            if source is None:
                if "default" not in field:
                    problems.append(f"{sub}: new field without a default")
                continue
            problems += _problems(source["type"], field["type"], sub)
        return problems

    if wt == "enum":
        if not _names_match(writer, reader):
            return [f"{here}: enum renamed from {_full_name(writer)} to {_full_name(reader)} without alias"]
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{here}: enum symbols removed without a default: {', '.join(missing)}"]
        return []

    if wt == "array":
        return _problems(writer["items"], reader["items"], f"{path}[]")
    if wt == "map":
        return _problems(writer["values"], reader["values"], f"{path}{{}}")
    if wt == "fixed":
        if writer["size"] != reader["size"] or not _names_match(writer, reader):
            return [f"{here}: fixed changed from {writer['size']} to {reader['size']} bytes or renamed"]
        return []
    # logical types ride on their underlying type: {"type": "int", "logicalType": "date"}
    return _problems(writer["type"], reader["type"], path) if wt != rt else []
