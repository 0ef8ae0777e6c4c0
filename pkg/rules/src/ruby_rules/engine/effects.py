"""What the engine decided, for its caller to carry out: `Effects`, and run traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ruby_rules.context import TriggerData
from ruby_rules.engine.interpreter import CommandOut, EventOut
from ruby_rules.engine.records import TimerRecord
from ruby_schemas.base import Payload
from ruby_schemas.traces import RunTrace, TraceStep, TraceTrigger

MAX_TRACE_STEPS: Final = 500
"""Steps a run's trace (and so its record) keeps: the first 100, a note, the latest ones. A
repeat can run thousands of steps; the record must stay a small KV value."""


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
    traces: list[RunTrace] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.commands or self.events or self.rule_events or self.timers or self.traces)

    def extend(self, other: Effects) -> None:
        """Add ``other``'s effects after these."""
        self.commands += other.commands
        self.events += other.events
        self.rule_events += other.rule_events
        self.timers.update(other.timers)
        self.traces += other.traces


def trigger_summary(t: TriggerData) -> TraceTrigger:
    """The part of a trigger a trace shows."""
    changed = t.entity_id is not None
    return TraceTrigger(
        kind=t.kind,
        id=t.id,
        event_id=t.event_id,
        time=t.time,
        entity_id=t.entity_id,
        from_=t.from_state.state if changed and t.from_state is not None else None,
        to=t.to_state.state if changed and t.to_state is not None else None,
        event_type=t.event_type,
    )


def ended(trace: RunTrace, status: str, reason: str) -> RunTrace:
    """``trace`` with its status and reason set."""
    return trace.model_copy(update={"status": status, "reason": reason})


def bounded(steps: tuple[TraceStep, ...]) -> tuple[TraceStep, ...]:
    """``steps`` within `MAX_TRACE_STEPS`: the first 100, a note, then the latest ones."""
    if len(steps) <= MAX_TRACE_STEPS:
        return steps
    tail = steps[-(MAX_TRACE_STEPS - 101) :]
    note = TraceStep(at=tail[0].at, path="trace", kind="trace", result="earlier steps left out")
    return (*steps[:100], note, *tail)


def bounded_ids(command_ids: tuple[str, ...]) -> tuple[str, ...]:
    """``command_ids`` within `MAX_TRACE_STEPS` - 1: the first 100, then the latest ones."""
    if len(command_ids) < MAX_TRACE_STEPS:
        return command_ids
    return (*command_ids[:100], *command_ids[-(MAX_TRACE_STEPS - 101) :])
