"""The subject convention: the one module that builds and parses Ruby Core subjects.

Every subject is ``<prefix>.<family>...`` (DESIGN.md, "Subjects, streams, buckets"). Building
validates each token; parsing is the exact inverse of building, so ``parse(s.build()) == s``.
No other module formats a subject string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

DEFAULT_PREFIX: Final = "ruby"

AUDIT_API: Final = "audit"
"""The audit sink's request/reply API: ``<p>.api.audit.<verb>`` (ADR-0036)."""
API_VERBS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {AUDIT_API: ("query", "why", "verify")}
)
"""Every request/reply API and its verbs. ``api`` is in no stream's subjects: a request is
answered by whoever listens, never stored."""

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class SubjectError(ValueError):
    """A value cannot be a subject token, or a subject does not follow the convention."""


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is a safe subject token; else raise naming ``what`` and the value.

    A safe token is non-empty ASCII letters, digits, ``_`` or ``-``: no dots (they split
    tokens), no wildcards, no whitespace.
    """
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise SubjectError(
            f"{what} {value!r} is not a valid subject token "
            "(use letters, digits, '_' or '-'; no dots, spaces or wildcards)"
        )
    return value


def split_entity_id(entity_id: str) -> tuple[str, str]:
    """Split ``domain.object_id`` into its two tokens, each checked; raise naming the entity."""
    domain, dot, object_id = (
        entity_id.partition(".") if isinstance(entity_id, str) else ("", "", "")
    )
    if not dot:
        raise SubjectError(f"entity id {entity_id!r} is not of the form 'domain.object_id'")
    try:
        check_token(domain, "domain")
        check_token(object_id, "object id")
    except SubjectError as exc:
        raise SubjectError(f"entity id {entity_id!r}: {exc}") from None
    return domain, object_id


@dataclass(frozen=True)
class StateSubject:
    """``<p>.evt.ha.state.<domain>.<object_id>``: an entity changed (live or reconciled)."""

    entity_id: str


@dataclass(frozen=True)
class HaEventSubject:
    """``<p>.evt.ha.event.<event_type>``: another Home Assistant bus event."""

    event_type: str


@dataclass(frozen=True)
class HaLifecycleSubject:
    """``<p>.evt.ha.lifecycle.<event>``: Home Assistant started or shut down (ADR-0032)."""

    event: str


@dataclass(frozen=True)
class WebhookSubject:
    """``<p>.evt.api.webhook.<webhook_id>``: a webhook called through the API (ADR-0037)."""

    webhook_id: str


@dataclass(frozen=True)
class OutcomeSubject:
    """``<p>.evt.cmd.<outcome>.<domain>.<service>``: the outcome of a command."""

    outcome: str
    domain: str
    service: str


@dataclass(frozen=True)
class RuleSubject:
    """``<p>.evt.engine.rule.<rule_id>.<what>``: a rule fired, failed, was loaded..."""

    rule_id: str
    what: str


@dataclass(frozen=True)
class CommandSubject:
    """``<p>.cmd.ha.<domain>.<service>``: call this Home Assistant service."""

    domain: str
    service: str


@dataclass(frozen=True)
class AuditSubject:
    """``<p>.audit.<service>.<action>``: a critical action happened."""

    service: str
    action: str


@dataclass(frozen=True)
class DlqSubject:
    """``<p>.dlq.<stream>.<consumer>``: a message its consumer gave up on."""

    stream: str
    consumer: str


@dataclass(frozen=True)
class ApiSubject:
    """``<p>.api.<family>.<verb>``: a request to the service that answers ``family``."""

    family: str
    verb: str


Parsed: TypeAlias = (
    StateSubject
    | HaEventSubject
    | HaLifecycleSubject
    | WebhookSubject
    | OutcomeSubject
    | RuleSubject
    | CommandSubject
    | AuditSubject
    | DlqSubject
    | ApiSubject
)


@dataclass(frozen=True)
class Subjects:
    """Builds and parses the subjects of one installation, namespaced by ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_token(self.prefix, "subject prefix")

    # --- concrete subjects ---------------------------------------------------------------

    def ha_state(self, entity_id: str) -> str:
        domain, object_id = split_entity_id(entity_id)
        return f"{self.prefix}.evt.ha.state.{domain}.{object_id}"

    def ha_event(self, event_type: str) -> str:
        return f"{self.prefix}.evt.ha.event.{check_token(event_type, 'event type')}"

    def ha_lifecycle(self, event: str) -> str:
        return f"{self.prefix}.evt.ha.lifecycle.{check_token(event, 'lifecycle event')}"

    def webhook(self, webhook_id: str) -> str:
        return f"{self.prefix}.evt.api.webhook.{check_token(webhook_id, 'webhook id')}"

    def cmd_outcome(self, outcome: str, domain: str, service: str) -> str:
        return (
            f"{self.prefix}.evt.cmd.{check_token(outcome, 'outcome')}"
            f".{check_token(domain, 'domain')}.{check_token(service, 'service')}"
        )

    def rule(self, rule_id: str, what: str) -> str:
        return (
            f"{self.prefix}.evt.engine.rule.{check_token(rule_id, 'rule id')}"
            f".{check_token(what, 'rule event')}"
        )

    def command(self, domain: str, service: str) -> str:
        return (
            f"{self.prefix}.cmd.ha.{check_token(domain, 'domain')}"
            f".{check_token(service, 'service')}"
        )

    def audit(self, service: str, action: str) -> str:
        return (
            f"{self.prefix}.audit.{check_token(service, 'service identity')}"
            f".{check_token(action, 'audit action')}"
        )

    def dlq(self, stream: str, consumer: str) -> str:
        return (
            f"{self.prefix}.dlq.{check_token(stream, 'stream')}.{check_token(consumer, 'consumer')}"
        )

    def api(self, family: str, verb: str) -> str:
        """The request subject of ``verb`` of the API ``family``; only the verbs of
        `API_VERBS` exist."""
        if verb not in API_VERBS.get(family, ()):
            raise SubjectError(f"there is no request {family!r} {verb!r} (see API_VERBS)")
        return f"{self.prefix}.api.{family}.{verb}"

    def build(self, parsed: Parsed) -> str:
        """Build the subject that ``parse`` would turn into ``parsed``."""
        match parsed:
            case StateSubject(entity_id):
                return self.ha_state(entity_id)
            case HaEventSubject(event_type):
                return self.ha_event(event_type)
            case HaLifecycleSubject(event):
                return self.ha_lifecycle(event)
            case WebhookSubject(webhook_id):
                return self.webhook(webhook_id)
            case OutcomeSubject(outcome, domain, service):
                return self.cmd_outcome(outcome, domain, service)
            case RuleSubject(rule_id, what):
                return self.rule(rule_id, what)
            case CommandSubject(domain, service):
                return self.command(domain, service)
            case AuditSubject(service, action):
                return self.audit(service, action)
            case DlqSubject(stream, consumer):
                return self.dlq(stream, consumer)
            case ApiSubject(family, verb):
                return self.api(family, verb)

    # --- wildcards (stream subjects and consumer filters) ---------------------------------

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.evt.>"

    @property
    def ha_all(self) -> str:
        return f"{self.prefix}.evt.ha.>"

    @property
    def webhooks_all(self) -> str:
        return f"{self.prefix}.evt.api.webhook.>"

    @property
    def outcomes_all(self) -> str:
        return f"{self.prefix}.evt.cmd.>"

    @property
    def rules_all(self) -> str:
        return f"{self.prefix}.evt.engine.>"

    @property
    def commands_all(self) -> str:
        return f"{self.prefix}.cmd.>"

    @property
    def audit_all(self) -> str:
        return f"{self.prefix}.audit.>"

    @property
    def dlq_all(self) -> str:
        return f"{self.prefix}.dlq.>"

    def audit_of(self, service: str) -> str:
        """Every audit subject of one service identity: ``<p>.audit.<service>.>``."""
        return f"{self.prefix}.audit.{check_token(service, 'service identity')}.>"

    # --- parsing -------------------------------------------------------------------------

    def parse(self, subject: str) -> Parsed:
        """Parse a concrete subject of this installation; raise ``SubjectError`` if not one."""
        tokens = subject.split(".")
        if tokens[0] != self.prefix:
            raise SubjectError(f"subject {subject!r} does not start with prefix {self.prefix!r}")
        for token in tokens[1:]:
            if _TOKEN.fullmatch(token) is None:
                raise SubjectError(f"subject {subject!r} has an invalid token {token!r}")
        match tokens[1:]:
            case ["evt", "ha", "state", domain, object_id]:
                return StateSubject(f"{domain}.{object_id}")
            case ["evt", "ha", "event", event_type]:
                return HaEventSubject(event_type)
            case ["evt", "ha", "lifecycle", event]:
                return HaLifecycleSubject(event)
            case ["evt", "api", "webhook", webhook_id]:
                return WebhookSubject(webhook_id)
            case ["evt", "cmd", outcome, domain, service]:
                return OutcomeSubject(outcome, domain, service)
            case ["evt", "engine", "rule", rule_id, what]:
                return RuleSubject(rule_id, what)
            case ["cmd", "ha", domain, service]:
                return CommandSubject(domain, service)
            case ["audit", service, action]:
                return AuditSubject(service, action)
            case ["dlq", stream, consumer]:
                return DlqSubject(stream, consumer)
            case ["api", family, verb] if verb in API_VERBS.get(family, ()):
                return ApiSubject(family, verb)
        raise SubjectError(f"subject {subject!r} does not follow the Ruby Core convention")
