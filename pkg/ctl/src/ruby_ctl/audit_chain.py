"""The links of `rubyctl audit why`'s chain of causes, and how each is printed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ruby_ctl.audit_read import when


@dataclass(frozen=True)
class Change:
    """A state change of an entity: the one asked about, or one that triggered a rule."""

    entity_id: str
    context_id: str | None = None
    state: str | None = None
    old_state: str | None = None
    at: datetime | None = None
    event_id: str | None = None
    reconciled: bool = False
    note: str | None = None
    """Why the change is known only by its event id (not read from EVENTS)."""

    def line(self, first: bool) -> str:
        at = "" if self.at is None else f" at {when(self.at)}"
        if first:
            if self.state is None:
                return f"{self.entity_id} (context {self.context_id})"
            since = "" if self.at is None else f" since {when(self.at)}"
            return f"{self.entity_id} is {self.state}{since} (context {self.context_id})"
        if self.note is not None:
            return f"  <- {self.entity_id} changed{at} (event {self.event_id}; {self.note})"
        old = self.old_state if self.old_state is not None else "none"
        new = self.state if self.state is not None else "removed"
        how = ", reconciled after a gateway reconnect" if self.reconciled else ""
        return f"  <- {self.entity_id} changed {old} -> {new}{at} (event {self.event_id}{how})"

    def to_json(self) -> dict[str, object]:
        return {
            "link": "state",
            "entity_id": self.entity_id,
            "state": self.state,
            "old_state": self.old_state,
            "changed_at": None if self.at is None else self.at.isoformat(),
            "context_id": self.context_id,
            "event_id": self.event_id,
            "reconciled": self.reconciled,
            "note": self.note,
        }


@dataclass(frozen=True)
class Command:
    """The gateway executed a command, and Home Assistant answered with the context."""

    command_id: str
    service: str
    at: datetime
    actor: str
    correlation_id: str
    record_id: str
    seq: int

    def line(self, first: bool) -> str:
        return (
            f"  <- command {self.command_id} {self.service} executed at {when(self.at)} "
            f"by {self.actor}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "link": "command",
            "command_id": self.command_id,
            "service": self.service,
            "executed_at": self.at.isoformat(),
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "record_id": self.record_id,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class Rule:
    """A rule fired and sent the command."""

    rule_id: str
    version: str | None
    at: datetime
    trigger_event_id: str | None
    run_id: str | None
    correlation_id: str
    record_id: str
    seq: int

    def line(self, first: bool) -> str:
        version = f" (version {self.version})" if self.version else ""
        return f"  <- rule {self.rule_id}{version} fired at {when(self.at)}"

    def to_json(self) -> dict[str, object]:
        return {
            "link": "rule",
            "rule_id": self.rule_id,
            "rule_version": self.version,
            "fired_at": self.at.isoformat(),
            "trigger_event_id": self.trigger_event_id,
            "run_id": self.run_id,
            "correlation_id": self.correlation_id,
            "record_id": self.record_id,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class Trigger:
    """A trigger that is not a state change: a time, or another Home Assistant event."""

    event_id: str

    @property
    def kind(self) -> str:
        return "time" if self.event_id.startswith("at.") else "event"

    def line(self, first: bool) -> str:
        if self.kind == "time":
            return f"  <- time trigger {self.event_id}"
        return f"  <- event {self.event_id} (not a state change; not followed further)"

    def to_json(self) -> dict[str, object]:
        return {"link": "trigger", "kind": self.kind, "event_id": self.event_id}


Link = Change | Command | Rule | Trigger


@dataclass(frozen=True)
class Chain:
    """The links found, newest first, and how the search ended."""

    links: tuple[Link, ...]
    end: str | None = None
    """A last line: the entity was not changed by Ruby Core, or the link that is missing."""
    complete: bool = True
    """False when a link is missing; ``end`` says which."""

    @property
    def caused_by_ruby_core(self) -> bool:
        return any(isinstance(link, Command) for link in self.links)

    def lines(self) -> list[str]:
        lines = [link.line(i == 0) for i, link in enumerate(self.links)]
        if self.end is not None:
            lines.append(f"  <- {self.end}")
        return lines

    def to_json(self) -> dict[str, object]:
        first = self.links[0]
        assert isinstance(first, Change)  # noqa: S101 - a chain starts with the entity
        return {
            "entity_id": first.entity_id,
            "context_id": first.context_id,
            "state": first.state,
            "caused_by_ruby_core": self.caused_by_ruby_core,
            "complete": self.complete,
            "end": self.end,
            "chain": [link.to_json() for link in self.links],
        }
