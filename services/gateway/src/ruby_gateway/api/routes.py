"""THE table of API routes: method, path, the scope a token needs, and what it does.

It is the one place the router, the edge's scope check (`match`), the OpenAPI document and the
edge's test matrix read routes from: a route added here is served, guarded, documented and
tested, and a route cannot be served without a scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ruby_schemas.api_tokens import Scope

PREFIX: Final = "/api/v1"


@dataclass(frozen=True)
class Route:
    """One route. ``path`` is below `PREFIX`, with ``{name}`` for a path parameter."""

    method: str
    path: str
    scope: Scope
    name: str
    summary: str
    description: str = ""
    """More than the summary, when a client needs to know it (the OpenAPI description)."""

    @property
    def full_path(self) -> str:
        return f"{PREFIX}{self.path}"

    @property
    def pattern(self) -> re.Pattern[str]:
        """The concrete paths this route answers (a parameter is one path segment)."""
        escaped = re.escape(self.full_path)
        return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", escaped) + "$")


ROUTES: Final = (
    Route("GET", "/openapi.json", Scope.READ, "openapi", "This API's OpenAPI 3.1 document"),
    Route("GET", "/states", Scope.READ, "list_states", "Every entity's state (the projection)"),
    Route("GET", "/states/{entity_id}", Scope.READ, "get_state", "One entity's state"),
    Route(
        "POST",
        "/services/{domain}/{service}",
        Scope.CONTROL,
        "call_service",
        "Call a Home Assistant service, once per Idempotency-Key",
    ),
    Route(
        "POST",
        "/events/{event_type}",
        Scope.CONTROL,
        "fire_event",
        "Fire an event on Home Assistant's bus, once per Idempotency-Key",
    ),
    Route(
        "POST",
        "/webhooks/{webhook_id}",
        Scope.CONTROL,
        "call_webhook",
        "Call a webhook: the rules whose webhook trigger names it run, once per Idempotency-Key",
    ),
    Route("GET", "/commands/{command_id}", Scope.READ, "command_status", "How a command ended"),
    Route("GET", "/rules", Scope.READ, "list_rules", "Every loaded rule and every refused file"),
    Route(  # it changes nothing: a read
        "POST", "/rules/check", Scope.READ, "check_rules", "Validate a rule file (YAML body)"
    ),
    Route("GET", "/rules/{rule_id}", Scope.READ, "get_rule", "One rule: its file, version, runs"),
    Route(
        "GET",
        "/rules/{rule_id}/traces",
        Scope.READ,
        "rule_traces",
        "A rule's recent runs, oldest first",
    ),
    Route(
        "GET",
        "/ws",
        Scope.READ,
        "stream",
        "Live states, events, rule events and command outcomes over a WebSocket; resumable",
    ),
    Route(
        "GET",
        "/dlq",
        Scope.ADMIN,
        "list_dlq",
        "Dead letters, oldest first (rubyctl dlq ls's filters), a page at a time",
        "Query: stream, consumer, subject (a glob on the original subject), older_than and "
        "newer_than (90s, 10m, 2h, 7d), after (a DLQ sequence: the page after it) and limit "
        "(1 to 500, 100 by default). `next_after` is the `after` of the next page, or null. "
        "Each letter says whether the API may replay it (`replayable`).",
    ),
    Route("GET", "/dlq/{seq}", Scope.ADMIN, "get_dlq", "One dead letter, with its payload"),
    Route(
        "POST",
        "/dlq/{seq}/replay",
        Scope.ADMIN,
        "replay_dlq",
        "Replay a dead letter to its original subject, if the gateway may publish there",
        "Republishes the original message (new message id), audits the replay with the "
        "token's name, and deletes the dead letter unless the body says `keep`. The gateway "
        "replays only to subjects its own NATS permissions let it publish (today: Home "
        "Assistant states and events, command outcomes, commands, its own audit records), "
        "and only a letter stored by the consumer it names, which receives that subject. "
        "Anything else (a rule event, another service's audit record) is refused with 409: "
        "replay it as the operator, with `rubyctl dlq replay SEQ` (ADR-0038).",
    ),
    Route(
        "DELETE",
        "/dlq/{seq}",
        Scope.ADMIN,
        "delete_dlq",
        "Delete one dead letter for good (audited with the token's name)",
    ),
    Route(  # answered by the audit sink over request/reply (ADR-0036)
        "GET",
        "/audit",
        Scope.READ,
        "audit_query",
        "Audit records: since, until, actor, action, entity (exact, or a prefix ending '*'), "
        "limit; the newest, oldest first",
    ),
    Route(
        "GET",
        "/audit/why/{entity_id}",
        Scope.READ,
        "audit_why",
        "Why an entity is in its state: command, rule, trigger, and on (?context= to start "
        "from a context id)",
    ),
    Route(
        "GET", "/audit/verify", Scope.READ, "audit_verify", "Verify the audit store's hash chain"
    ),
)


def match(method: str, path: str) -> Route | None:
    """The route a request is for; None when there is none (a 404 once the token is good)."""
    for route in ROUTES:
        if route.method == method.upper() and route.pattern.match(path):
            return route
    return None
