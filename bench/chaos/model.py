"""What the chaos run records: changes and service calls seen in Home Assistant, and the kills."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("gateway", "engine", "audit_sink", "nats-server")
"""The kinds of process the run kills, in the order the report lists them."""


@dataclass(frozen=True)
class Pair:
    """A mirror rule's two entities: every change of ``source`` is copied onto ``mirror``."""

    source: str
    mirror: str

    @property
    def mirror_domain(self) -> str:
        return self.mirror.split(".", 1)[0]


@dataclass(frozen=True)
class Change:
    """One ``state_changed`` of an entity, as Home Assistant fired it.

    ``at`` is the new state's ``last_updated`` (seconds since the epoch, HA's clock, which is
    this machine's), ``context_id`` the context that caused it (a service call's, for a mirror).
    """

    entity_id: str
    state: str
    at: float
    context_id: str = ""


@dataclass(frozen=True)
class Call:
    """One ``call_service`` event: Home Assistant received a service call, at ``at``."""

    domain: str
    service: str
    entity_ids: tuple[str, ...]
    context_id: str
    at: float


@dataclass
class Kill:
    """One ``kill -9``: of what (``kind``, one of `KINDS`), which PID, when, and when it was back.

    ``back_at`` is None when it was not back within the run's timeout (or the stack stopped);
    ``note`` says why a kill was not made or how it ended.
    """

    kind: str
    pid: int | None
    at: float
    back_at: float | None = None
    note: str = ""
    restarts: list[str] = field(default_factory=list)
    """``rubyctl up``'s restart lines seen between the kill and the end of its window."""

    @property
    def downtime(self) -> float | None:
        return None if self.back_at is None else self.back_at - self.at


@dataclass(frozen=True)
class AuditFacts:
    """What the audit store says about the mirror commands (``rubyctl audit query --json``)."""

    executed: dict[str, int] = field(default_factory=dict)
    """command id -> number of ``command.executed`` records (more than 1: executed twice)."""
    executed_contexts: frozenset[str] = frozenset()
    """The Home Assistant context ids recorded by ``command.executed`` records."""
    shared_contexts: int = 0
    """Context ids claimed by more than one command id (a recovered command credited with
    another command's call would make that call's twin look unclaimed)."""
    refused: dict[str, str] = field(default_factory=dict)
    """command id -> the reason of its ``command.refused`` record."""
    fired: int = 0
    """``rule.fired`` records of the chaos rules."""
    actions: dict[str, int] = field(default_factory=dict)
    """Every action in the store, counted (shown as a cross-check)."""
