"""OpenAPI description of the feed's JSON API (the same features as the pages)."""

from __future__ import annotations

from typing import Any

from connectors.feed.board import DISPOSITIONS, SEVERITIES

_ALERT = {
    "type": "object",
    "required": ["alert_id", "rule_id", "status", "severity", "office", "subject", "triage", "reasons"],
    "properties": {
        "alert_id": {"type": "string"},
        "rule_id": {"type": "string"},
        "rule_version": {"type": "string"},
        "status": {"enum": ["RAISED", "AMENDED", "WITHDRAWN"]},
        "severity": {"enum": list(SEVERITIES)},
        "office": {"type": "string"},
        "subject": {"type": "object", "description": "person_key (not for agency members), establishment, sponsor"},
        "raised_at": {"type": "integer", "description": "event time the alert was raised, epoch ms"},
        "emitted_at": {"type": "integer", "description": "when the detectors emitted it, epoch ms"},
        "triage": {"enum": ["OPEN", "ACKNOWLEDGED", "ASSIGNED", "RESOLVED"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "evidence": {"type": "array", "items": {"type": "object"}},
        "history": {"type": "array", "items": {"type": "object"}},
        "actions": {"type": "array", "items": {"type": "object"}},
    },
}
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
_FILTERS = [
    {"name": n, "in": "query", "required": False, "schema": s, "description": d}
    for n, s, d in (
        ("office", {"type": "string"}, "office code"),
        ("rule", {"type": "string"}, "rule id"),
        ("severity", {"enum": list(SEVERITIES)}, "severity"),
        ("status", {"type": "string"}, "RAISED, AMENDED, WITHDRAWN, or a triage state"),
        ("since", {"type": "string", "format": "date"}, "raised on or after this local (WIB) day"),
        ("until", {"type": "string", "format": "date"}, "raised on or before this local (WIB) day"),
    )
]


def spec() -> dict[str, Any]:
    alert_id = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pora supervisor feed",
            "version": "1",
            "description": "Alerts scoped to the caller's offices and role. Authenticate with a session cookie "
            "(then send X-CSRF-Token on POST) or 'Authorization: Bearer <token>'.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Alert": _ALERT},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/alerts": {
                "get": {
                    "summary": "Alerts, newest first",
                    "parameters": [
                        *_FILTERS,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}},
                    ],
                    "responses": {
                        "200": {
                            "description": "alerts",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "total": {"type": "integer"},
                                            "alerts": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Alert"},
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        "401": _PROBLEM,
                        "422": _PROBLEM,
                    },
                }
            },
            "/api/alerts/{alert_id}": {
                "get": {
                    "summary": "One alert with evidence, history and triage actions",
                    "parameters": [alert_id],
                    "responses": {
                        "200": {
                            "description": "the alert",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Alert"}}},
                        },
                        "404": _PROBLEM,
                    },
                }
            },
            "/api/alerts/{alert_id}/actions": {
                "post": {
                    "summary": "Record a triage action (written to alerts.actions, answered after the broker's ack)",
                    "parameters": [alert_id],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["action"],
                                    "properties": {
                                        "action": {"enum": ["ACKNOWLEDGE", "ASSIGN", "RESOLVE", "REOPEN", "COMMENT"]},
                                        "disposition": {"enum": list(DISPOSITIONS)},
                                        "assignee": {"type": "string"},
                                        "comment": {"type": "string", "maxLength": 2000},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": {"description": "recorded"},
                        "403": _PROBLEM,
                        "404": _PROBLEM,
                        "422": _PROBLEM,
                        "503": _PROBLEM,
                    },
                }
            },
            "/api/counts": {
                "get": {
                    "summary": "Alerts by rule and per day",
                    "parameters": _FILTERS,
                    "responses": {"200": {"description": "counts"}},
                }
            },
            "/stream": {
                "get": {
                    "summary": "Server-sent events: `alert` with each alert as it is raised or changes",
                    "parameters": _FILTERS,
                    "responses": {"200": {"description": "text/event-stream"}},
                }
            },
        },
    }
