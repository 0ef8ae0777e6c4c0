"""The API's OpenAPI 3.1 document, made from the route table (`routes.ROUTES`).

Served at ``/api/v1/openapi.json`` and committed at ``docs/api/openapi.json`` (``make
schemas`` writes it; a test fails when the two differ).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Final

from ruby_gateway.api.routes import PREFIX, ROUTES, Route
from ruby_runtime.version import VERSION
from ruby_schemas.commands import Outcome

PROBLEM: Final = {"$ref": "#/components/schemas/Problem"}


def _problem() -> dict[str, Any]:
    return {"application/problem+json": {"schema": PROBLEM}}


STATE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["entity_id", "state", "attributes", "last_changed", "last_updated"],
    "properties": {
        "entity_id": {"type": "string", "examples": ["light.hallway"]},
        "state": {"type": "string"},
        "attributes": {"type": "object", "description": "the lean projection's attributes"},
        "last_changed": {"type": "string", "format": "date-time"},
        "last_updated": {"type": "string", "format": "date-time"},
        "context_id": {"type": "string", "description": "Home Assistant's context id"},
    },
}
RESPONSES: Final[dict[str, dict[str, Any]]] = {
    "list_states": {
        "200": {
            "description": "every entity, sorted by id",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/State"}}
                }
            },
        }
    },
    "get_state": {
        "200": {
            "description": "the entity",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/State"}}},
        },
        "400": {"description": "not an entity id", "content": _problem()},
        "404": {"description": "no such entity", "content": _problem()},
    },
    "openapi": {"200": {"description": "this document", "content": {"application/json": {}}}},
    "call_service": {
        "202": {
            "description": "accepted as a command on COMMANDS; Location names its status",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "400": {"description": "a field of the request is wrong", "content": _problem()},
    },
    "fire_event": {
        "202": {
            "description": "accepted as a command on COMMANDS; Location names its status",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "400": {"description": "a field of the request is wrong", "content": _problem()},
    },
    "list_rules": {
        "200": {
            "description": "every rule (by id) and every refused file with its errors",
            "content": {"application/json": {}},
        },
    },
    "check_rules": {
        "200": {
            "description": "ok, the rule ids it defines, and every error (line, column, message)",
            "content": {"application/json": {}},
        },
        "413": {"description": "larger than a rule file may be", "content": _problem()},
    },
    "get_rule": {
        "200": {"description": "the rule", "content": {"application/json": {}}},
        "400": {"description": "not a rule id", "content": _problem()},
        "404": {"description": "no such rule", "content": _problem()},
    },
    "rule_traces": {
        "200": {
            "description": "its recent runs, oldest first",
            "content": {"application/json": {}},
        },
        "400": {"description": "not a rule id", "content": _problem()},
        "404": {"description": "no such rule", "content": _problem()},
    },
    "command_status": {
        "200": {
            "description": "pending, or how it ended",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CommandStatus"}}
            },
        },
        "404": {"description": "no such command (or no longer kept)", "content": _problem()},
    },
}
UNAVAILABLE: Final = {"description": "the audit sink is not answering", "content": _problem()}
RESPONSES["audit_query"] = {
    "200": {
        "description": "records (seq, hash, stored_at, record), oldest first; truncated when "
        "older matches were left out",
        "content": {"application/json": {}},
    },
    "400": {"description": "a query parameter is wrong (named)", "content": _problem()},
    "503": UNAVAILABLE,
}
RESPONSES["audit_why"] = {
    "200": {
        "description": "the chain of causes, the entity's own change first (as `rubyctl "
        "audit why --json`)",
        "content": {"application/json": {}},
    },
    "400": {"description": "not an entity id, or a bad context id", "content": _problem()},
    "404": {"description": "no such entity (and no ?context=)", "content": _problem()},
    "503": UNAVAILABLE,
}
RESPONSES["audit_verify"] = {
    "200": {
        "description": "ok, or where the chain is broken (seq, record id, reason)",
        "content": {"application/json": {}},
    },
    "503": UNAVAILABLE,
}
ONE_OR_MANY: Final = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
REQUEST_BODIES: Final[dict[str, dict[str, Any]]] = {
    "call_service": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "target": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                key: ONE_OR_MANY for key in ("entity_id", "device_id", "area_id")
                            },
                        },
                        "data": {"type": "object"},
                    },
                }
            }
        },
    }
}
REQUEST_BODIES["check_rules"] = {
    "required": True,
    "content": {"application/yaml": {"schema": {"type": "string"}}},
}
REQUEST_BODIES["fire_event"] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"data": {"type": "object"}},
            }
        }
    },
}
IDEMPOTENCY_KEY: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key (1-128 visible ASCII characters) from the same token names "
    "the same command: a retried request runs once",
    "schema": {"type": "string", "maxLength": 128},
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}  # fmt: skip


WHEN: Final = "a duration ago (90s, 10m, 2h, 7d) or an ISO 8601 time with its offset"
PREFIXED: Final = "exactly, or a prefix when it ends with '*'"
HEADERS: Final[dict[str, list[dict[str, Any]]]] = {  # header and query parameters
    "call_service": [IDEMPOTENCY_KEY],
    "fire_event": [IDEMPOTENCY_KEY],
    "audit_query": [
        _query("since", f"records that occurred from then: {WHEN}"),
        _query("until", f"records that occurred before then: {WHEN}"),
        _query("actor", f"who acted (service:gateway), {PREFIXED}"),
        _query("action", f"what was done (command.executed), {PREFIXED}"),
        _query("entity", f"what it was done to (light.turn_on, rule:porch), {PREFIXED}"),
        _query(
            "limit",
            "at most this many of the newest matches (default 100)",
            {"type": "integer", "minimum": 1, "maximum": 1000},
        ),
    ],
    "audit_why": [_query("context", "start from this Home Assistant context id instead")],
}


def document() -> dict[str, Any]:
    """The whole document, as JSON-ready data."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ruby Core API",
            "version": VERSION,
            "description": "Reachable only through Traefik's edge with an API token "
            "(`rubyctl token create NAME --scope read|control|admin`). Every error is RFC 9457 "
            "problem details.",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "State": STATE,
                "Accepted": {
                    "type": "object",
                    "required": ["command_id", "status"],
                    "properties": {
                        "command_id": {"type": "string"},
                        "status": {"const": "accepted"},
                    },
                },
                "CommandStatus": {
                    "type": "object",
                    "required": ["command_id", "status"],
                    "properties": {
                        "command_id": {"type": "string"},
                        "status": {"enum": ["pending", *(o.value for o in Outcome)]},
                        "ha_context_id": {"type": ["string", "null"]},
                        "error_code": {"type": ["string", "null"]},
                        "error_message": {"type": ["string", "null"]},
                        "finished_at": {"type": "string", "format": "date-time"},
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string", "format": "uri-reference"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    responses = dict(RESPONSES.get(route.name, {}))
    responses["401"] = {"description": "no valid token", "content": _problem()}
    responses["403"] = {
        "description": f"the token's scope does not cover {route.scope.value}",
        "content": _problem(),
    }
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "x-scope": route.scope.value,
        "responses": dict(sorted(responses.items())),
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", route.path)
    ] + HEADERS.get(route.name, [])
    if parameters:
        operation["parameters"] = parameters
    if route.name in REQUEST_BODIES:
        operation["requestBody"] = REQUEST_BODIES[route.name]
    return operation


def render() -> str:
    """The document as committed: indented, keys in the order written, a final newline."""
    return json.dumps(document(), indent=2) + "\n"


if __name__ == "__main__":  # make schemas: python -m ruby_gateway.api.openapi <file>
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[1]).write_text(render())
