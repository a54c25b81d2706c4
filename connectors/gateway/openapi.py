"""The gateway's OpenAPI 3.1 document, generated from the Avro contracts so the two never drift."""

from __future__ import annotations

from functools import cache
from typing import Any

from schemas.registry import current, expand_named
from schemas.validation import GATEWAY_FIELDS


def json_schema(avro: Any) -> dict[str, Any]:
    """JSON Schema of the JSON form the gateway accepts for an (expanded) Avro schema."""
    if isinstance(avro, list):
        inner = [b for b in avro if b != "null"]
        return {"anyOf": [json_schema(inner[0]), {"type": "null"}]}
    if isinstance(avro, str):
        avro = {"type": avro}
    kind, logical, doc = avro["type"], avro.get("logicalType"), avro.get("doc")
    out: dict[str, Any]
    if logical == "timestamp-millis":
        out = {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
            "description": "ISO 8601 with a UTC offset, or epoch milliseconds",
        }
    elif logical == "date":
        out = {"type": "string", "format": "date"}
    elif kind == "record":
        props = {
            f["name"]: {**json_schema(f["type"]), **({"description": f["doc"]} if f.get("doc") else {})}
            for f in avro["fields"]
        }
        out = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
            "required": [f["name"] for f in avro["fields"] if "default" not in f],
        }
    elif kind == "enum":
        out = {"type": "string", "enum": list(avro["symbols"])}
    elif kind == "array":
        out = {"type": "array", "items": json_schema(avro["items"])}
    elif kind in ("int", "long"):
        out = {"type": "integer"}
    elif kind in ("float", "double"):
        out = {"type": "number"}
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind == "null":
        out = {"type": "null"}
    elif isinstance(kind, dict | list):
        return json_schema(kind)
    else:
        out = {"type": "string"}
    if doc and "description" not in out:
        out["description"] = doc
    return out


def client_schema(kind: str) -> dict[str, Any]:
    avro = expand_named(current(kind).parsed, {})
    fields = []
    for f in avro["fields"]:
        if f["name"] in GATEWAY_FIELDS:
            continue
        if f["name"] == "event_id":
            f = {**f, "default": "", "doc": f["doc"] + " Optional: derived from the content when absent."}
        fields.append(f)
    return json_schema({**avro, "fields": fields})


_PROBLEM = {"$ref": "#/components/schemas/Problem"}


@cache
def _document(slugs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Receipt": {
            "type": "object",
            "properties": {
                "receipt_id": {"type": "string"},
                "event_id": {"type": "string"},
                "client_event_id": {"type": "string"},
                "kind": {"type": "string"},
                "received_at": {"type": "string", "format": "date-time"},
            },
        },
        "Accepted": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer"},
                "duplicates": {"type": "integer"},
                "receipts": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}},
            },
        },
        "Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "accepted": {"type": "integer"},
                "rejected": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "item": {"type": "string"},
                            "reason": {"type": "string"},
                            "field": {"type": "string"},
                            "problem": {"type": "string"},
                        },
                    },
                },
                "receipts": {"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}},
            },
        },
    }
    problems = {
        str(code): {"description": text, "content": {"application/problem+json": {"schema": _PROBLEM}}}
        for code, text in [
            (400, "body is not JSON / CSV"),
            (401, "no valid API key"),
            (403, "key may not send this kind or for this subject"),
            (409, "event_id reused for other content"),
            (413, "body or batch too large"),
            (415, "wrong Content-Type"),
            (422, "some events invalid; accepted ones are receipted in the body"),
            (503, "broker did not acknowledge; retry"),
        ]
    }
    ok = {
        "200": {
            "description": "all events accepted (receipts; repeats get their first receipt)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        }
    }
    paths: dict[str, Any] = {}
    for slug, kind in slugs:
        name = "".join(p.capitalize() for p in kind.split("_"))
        schemas[name] = client_schema(kind)
        ref = {"$ref": f"#/components/schemas/{name}"}
        paths[f"/v1/events/{slug}"] = {
            "post": {
                "summary": f'Report {kind.replace("_", " ")}s: one event, an array, or {{"events": [...]}}',
                "operationId": f"post_{kind}",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "anyOf": [
                                    ref,
                                    {"type": "array", "items": ref},
                                    {
                                        "type": "object",
                                        "properties": {"events": {"type": "array", "items": ref}},
                                        "required": ["events"],
                                        "additionalProperties": False,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {**ok, **problems},
            }
        }
    paths["/v1/registers/hotel-guests"] = {
        "post": {
            "summary": "Upload a hotel's guest register as CSV (one row per guest movement)",
            "operationId": "post_hotel_register",
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
            "responses": {**ok, **problems},
        }
    }
    for path, what in [
        ("/healthz", "process is alive"),
        ("/readyz", "producer started and dedup index loaded"),
        ("/metrics", "Prometheus metrics"),
    ]:
        paths[path] = {
            "get": {"summary": what, "operationId": path.strip("/"), "responses": {"200": {"description": what}}}
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pora ingestion gateway",
            "version": "1",
            "description": "Reports from hotels, checkpoints, sponsors, agencies and immigration offices. "
            "Every accepted event gets a receipt once the broker has acknowledged it; "
            "posting the same event again returns the same receipt.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def openapi_document(slugs: dict[str, str]) -> dict[str, Any]:
    return _document(tuple(sorted(slugs.items())))
