"""What the engine decided, for its caller to carry out: `Effects`, and run traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from ruby_rules.context import TriggerData
from ruby_rules.engine.interpreter import CommandOut, EventOut
from ruby_rules.engine.records import TimerRecord
from ruby_schemas.base import Payload

Trace = dict[str, Any]
"""One run as a JSON object: rule, trigger, status, reason, every step (see ``rules/README``)."""


@dataclass(frozen=True, slots=True)
class RuleEventOut:
    """A rule lifecycle event (``fired``, ``failed``) with its deterministic message id."""

    message_id: str
    what: str
    payload: Payload
    trigger: TriggerData


@dataclass(slots=True)
class Effects:
    """Commands and events to publish, timer records to store (``None``: delete), traces.

    Apply in this order where it matters: the caller of an event handler stores the timers,
    then publishes; a fired timer's caller publishes, then stores. Every id in here is
    deterministic, so applying the same effects twice changes nothing.
    """

    commands: list[CommandOut] = field(default_factory=list)
    events: list[EventOut] = field(default_factory=list)
    rule_events: list[RuleEventOut] = field(default_factory=list)
    timers: dict[str, TimerRecord | None] = field(default_factory=dict)
    traces: list[Trace] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.commands or self.events or self.rule_events or self.timers or self.traces)

    def extend(self, other: Effects) -> None:
        """Add ``other``'s effects after these."""
        self.commands += other.commands
        self.events += other.events
        self.rule_events += other.rule_events
        self.timers.update(other.timers)
        self.traces += other.traces


def trigger_summary(t: TriggerData) -> dict[str, JsonValue]:
    """The part of a trigger a trace shows."""
    summary: dict[str, JsonValue] = {
        "kind": t.kind,
        "id": t.id,
        "event_id": t.event_id,
        "time": t.time.isoformat(),
    }
    if t.entity_id is not None:
        summary["entity_id"] = t.entity_id
        summary["from"] = None if t.from_state is None else t.from_state.state
        summary["to"] = None if t.to_state is None else t.to_state.state
    if t.event_type is not None:
        summary["event_type"] = t.event_type
    return summary
