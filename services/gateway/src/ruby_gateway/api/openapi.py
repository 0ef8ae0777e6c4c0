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
AS_COMMAND: Final[dict[str, Any]] = {
    "202": {
        "description": "accepted as a command on COMMANDS; Location names its status",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    },
    "400": {"description": "a field of the request is wrong", "content": _problem()},
}
NO_RULE: Final[dict[str, Any]] = {
    "400": {"description": "not a rule id", "content": _problem()},
    "404": {"description": "no such rule", "content": _problem()},
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
    "call_service": AS_COMMAND,
    "fire_event": AS_COMMAND,
    "call_webhook": {
        "202": {
            "description": "recorded as an api.webhook.v1 event; the rules whose webhook "
            "trigger names it run (an id no rule listens to is accepted all the same)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["event_id", "webhook_id", "status"],
                        "properties": {
                            "event_id": {"type": "string"},
                            "webhook_id": {"type": "string"},
                            "status": {"const": "accepted"},
                        },
                    }
                }
            },
        },
        "400": {"description": "not a webhook id, or not JSON", "content": _problem()},
        "413": {"description": "a body over 256 KiB", "content": _problem()},
        "503": {"description": "not recorded (NATS unavailable): retry", "content": _problem()},
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
        **NO_RULE,
    },
    "rule_traces": {
        "200": {
            "description": "its recent runs, oldest first",
            "content": {"application/json": {}},
        },
        **NO_RULE,
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
RESPONSES["stream"] = {
    "101": {
        "description": "WebSocket (subprotocol ruby.v1). The server sends JSON text frames: "
        "first {type: hello, seq, head}, then, when `since` is older than the stream keeps, "
        "{type: gap, from, to, reason}, then one {type: event, seq, kind, subject, time, event} "
        "per stream message the filter wants, in stream order. Reconnect with since=<the last "
        "seq seen> to get exactly what was missed. A client that stops reading is closed with "
        "code 4008 and the sequence to resume from. The token travels in the Authorization "
        "header or, from a browser, as the subprotocol `bearer.<token>`; never in the URL."
    },
    "400": {"description": "a query parameter is wrong", "content": _problem()},
    "426": {"description": "not a WebSocket upgrade", "content": _problem()},
}
NOT_A_SEQ: Final = {"description": "not a DLQ sequence", "content": _problem()}
NO_LETTER: Final = {
    "description": "no message with this sequence in the DLQ",
    "content": _problem(),
}
NOT_A_LETTER: Final = {
    "description": "the message is not a valid dead letter",
    "content": _problem(),
}
RESPONSES["list_dlq"] = {
    "200": {
        "description": "a page of dead letters (without their payloads) and the next page's "
        "`after`",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeadLetters"}}},
    },
    "400": {"description": "a query parameter is wrong", "content": _problem()},
}
RESPONSES["get_dlq"] = {
    "200": {
        "description": "the dead letter, its payload in base64",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeadLetter"}}},
    },
    "400": NOT_A_SEQ,
    "404": NO_LETTER,
    "409": NOT_A_LETTER,
}
RESPONSES["replay_dlq"] = {
    "200": {
        "description": "republished: the subject and its new stream sequence",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Replayed"}}},
    },
    "400": {"description": "not a DLQ sequence, or a wrong body", "content": _problem()},
    "404": NO_LETTER,
    "409": {
        "description": "the gateway may not replay it (its subject is not one the gateway "
        "publishes, or its origin does not check out): use `rubyctl dlq replay SEQ`",
        "content": _problem(),
    },
    "503": {
        "description": "NATS did not store the replay; nothing was deleted",
        "content": _problem(),
    },
}
RESPONSES["delete_dlq"] = {
    "204": {"description": "deleted, and audited"},
    "400": NOT_A_SEQ,
    "404": NO_LETTER,
    "409": NOT_A_LETTER,
}
DEAD_LETTER: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["seq", "original_subject", "stream", "consumer", "reason", "replayable"],
    "properties": {
        "seq": {"type": "integer", "description": "its sequence in the DLQ stream"},
        "original_subject": {"type": "string"},
        "stream": {"type": "string", "description": "the stream it was consumed from"},
        "stream_sequence": {"type": "integer"},
        "consumer": {"type": "string", "description": "the durable that gave up on it"},
        "delivery_count": {"type": "integer"},
        "reason": {"type": "string"},
        "error": {"type": "string"},
        "first_failed_at": {"type": "string", "format": "date-time"},
        "last_failed_at": {"type": "string", "format": "date-time"},
        "headers": {"type": "object"},
        "original_payload": {
            "type": "string",
            "contentEncoding": "base64",
            "description": "GET /dlq/{seq} only",
        },
        "correlation_id": {"type": "string"},
        "replayable": {"type": "boolean", "description": "whether the API may replay it"},
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
REQUEST_BODIES["replay_dlq"] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "keep": {"type": "boolean", "description": "keep the dead letter afterwards"}
                },
            }
        }
    },
}
REQUEST_BODIES["call_webhook"] = {
    "required": False,
    "description": "any JSON value, or nothing: a run reads it as trigger.json",
    "content": {"application/json": {"schema": {}}},
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


DLQ_QUERY: Final = [
    _query("stream", "only from this stream (e.g. RUBY_COMMANDS)"),
    _query("consumer", "only given up on by this consumer (e.g. gateway)"),
    _query("subject", "only with an original subject matching this glob"),
    _query("older_than", "last failed at least this long ago (90s, 10m, 2h, 7d)"),
    _query("newer_than", "last failed at most this long ago (90s, 10m, 2h, 7d)"),
    _query(
        "after",
        "only after this DLQ sequence (the previous page's next_after)",
        {"type": "integer", "minimum": 0},
    ),
    _query("limit", "at most this many", {"type": "integer", "minimum": 1, "maximum": 500}),
]
STREAM_QUERY: Final = [
    _query("kinds", "comma-separated: states, events, rules, commands (default: all)"),
    _query("entities", "comma-separated entity ids or globs (light.*); narrows states"),
    _query("rules", "comma-separated rule ids or globs; narrows rule events"),
    _query(
        "since",
        "a stream sequence: start right after it (default: from now)",
        {"type": "integer", "minimum": 0},
    ),
]
WHEN: Final = "a duration ago (90s, 10m, 2h, 7d) or an ISO 8601 time with its offset"
PREFIXED: Final = "exactly, or a prefix when it ends with '*'"
HEADERS: Final[dict[str, list[dict[str, Any]]]] = {  # header and query parameters
    "call_service": [IDEMPOTENCY_KEY],
    "fire_event": [IDEMPOTENCY_KEY],
    "stream": STREAM_QUERY,
    "list_dlq": DLQ_QUERY,
    "call_webhook": [IDEMPOTENCY_KEY],
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
PATH_SCHEMAS: Final[dict[str, dict[str, Any]]] = {"seq": {"type": "integer", "minimum": 1}}


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
                "DeadLetter": DEAD_LETTER,
                "DeadLetters": {
                    "type": "object",
                    "required": ["dead_letters", "next_after"],
                    "properties": {
                        "dead_letters": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/DeadLetter"},
                        },
                        "next_after": {"type": ["integer", "null"]},
                    },
                },
                "Replayed": {
                    "type": "object",
                    "required": ["seq", "replayed_to", "stream_sequence", "kept"],
                    "properties": {
                        "seq": {"type": "integer"},
                        "replayed_to": {"type": "string"},
                        "stream_sequence": {"type": "integer"},
                        "kept": {"type": "boolean"},
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
    if route.description:
        operation["description"] = route.description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_SCHEMAS.get(name, {"type": "string"}),
        }
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
