"""RFC 9457 problem details: every error the gateway returns is one of these."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

PROBLEM_TYPES: dict[str, str] = {
    "invalid-events": "One or more events failed validation; each error names the item, the field and the problem.",
    "malformed-body": "The body could not be parsed as JSON or CSV.",
    "unauthenticated": "No valid API key was given (Authorization: Bearer <key> or X-API-Key).",
    "forbidden": "The key may not send this kind of event, or not for this establishment, checkpoint, "
    "sponsor, agency or office.",
    "conflict": "The event_id was already receipted for different content.",
    "too-large": "The body, the batch or an event is larger than the gateway or its topic accepts.",
    "unsupported-media-type": "The Content-Type is not one the endpoint accepts.",
    "not-found": "No such endpoint or event kind.",
    "method-not-allowed": "The endpoint does not answer this HTTP method.",
    "unavailable": "The broker did not acknowledge in time; nothing without a receipt was accepted. Retry.",
    "internal": "An unexpected error; it has been logged.",
}


def problem(
    status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {
        "type": f"/problems/{kind}",
        "title": PROBLEM_TYPES[kind].split(";")[0].rstrip("."),
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json", headers=headers
    )
