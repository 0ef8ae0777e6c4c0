"""Simulated time for ``rubyctl rules test|replay``: events in, what each rule would do out.

`Simulation` drives a `RuleEngine` with a clock of its own. Before each event it fires every
timer due up to the event's time, each at its own deadline (a ``for: 5m`` fires at exactly five
minutes), then hands the event over. Nothing is sent anywhere: the engine's commands, published
events and runs come back as `Happening`s to print. The clock never goes backwards: an event
stamped earlier than the clock is handled at the clock's time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from pydantic import JsonValue

from ruby_rules.engine import Effects, ForTimer, RuleEngine
from ruby_rules.engine.core import TIMER_NOTES
from ruby_rules.engine.interpreter import CommandOut, EventOut
from ruby_rules.model import Rule
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.ha_events import EntityState, EventFiredV1, HaLifecycleV1, StateChangedV1
from ruby_schemas.primitives import JsonObject
from ruby_schemas.traces import RunTrace
from ruby_schemas.webhooks import WebhookCalledV1

What = Literal["call", "fire_event", "publish", "run", "for"]
QUIET_STATUSES = frozenset({"finished"})
"""A run that ended like this and sent something is shown by what it sent alone."""
PAUSED = frozenset({"waiting", "queued"})
"""Statuses of a run that is not over: not counted as a run (as the engine's status counts)."""


@dataclass(frozen=True, slots=True)
class SetState:
    """An entity takes a state (events file form): the old state is the simulation's own."""

    time: datetime
    event_id: str
    entity_id: str
    state: str | None
    """``None``: the entity is removed."""
    attributes: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A state change with both states given (an ``ha.state_changed.v1`` envelope)."""

    time: datetime
    event_id: str
    entity_id: str
    old: EntityState | None
    new: EntityState | None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class BusEvent:
    """A Home Assistant bus event."""

    time: datetime
    event_id: str
    event_type: str
    data: JsonObject
    fired_at: datetime
    correlation_id: str | None = None


SimEvent = SetState | StateChange | BusEvent


def from_envelope(envelope: Envelope[Payload]) -> StateChange | BusEvent | None:
    """The event an envelope from EVENTS carries; ``None`` for anything but HA's events (its
    start and shutdown included) and webhook calls."""
    data = envelope.data
    if isinstance(data, StateChangedV1):
        return StateChange(
            envelope.time,
            envelope.id,
            data.entity_id,
            data.old_state,
            data.new_state,
            envelope.correlation_id,
        )
    if isinstance(data, EventFiredV1):
        return BusEvent(
            envelope.time,
            envelope.id,
            data.event_type,
            data.data,
            data.time_fired,
            envelope.correlation_id,
        )
    if isinstance(data, HaLifecycleV1):  # `homeassistant` triggers, as the engine offers it
        event: JsonObject = {"event": data.event}
        return BusEvent(envelope.time, envelope.id, data.event_type, event, data.at)
    if isinstance(data, WebhookCalledV1):  # `webhook` triggers, as the engine offers it
        called: JsonObject = data.trigger_data()
        return BusEvent(envelope.time, envelope.id, data.event_type, called, data.received,
                        envelope.correlation_id)  # fmt: skip
    return None


@dataclass(frozen=True, slots=True)
class Happening:
    """One thing a rule would have done, at a simulated time.

    ``text`` reads after ``<time> <rule>: ``; ``record`` is its JSON form (without time, rule
    and what). A ``quiet`` happening is left out of the text output (a finished run whose
    commands were shown already) but kept in the JSON output.
    """

    time: datetime
    rule_id: str
    what: What
    text: str
    record: dict[str, JsonValue]
    quiet: bool = False

    def to_json(self) -> dict[str, JsonValue]:
        """The JSON line: time, rule, what, then the record."""
        return {
            "time": self.time.isoformat(),
            "rule_id": self.rule_id,
            "what": self.what,
            **self.record,
        }


@dataclass(slots=True)
class Tally:
    """What one rule did over a simulation."""

    commands: int = 0
    events: int = 0
    runs: Counter[str] = field(default_factory=Counter)
    """Runs by final status (``finished``, ``not_run``...)."""


class Simulation:
    """A fresh `RuleEngine` on a simulated clock. Not thread-safe; one caller."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        start: datetime,
        tz: tzinfo | None,
        states: Mapping[str, EntityState] | None = None,
    ) -> None:
        self._engine = RuleEngine(tz=tz)
        self._engine.set_states(states or {})
        self._tz = tz
        self._armed: dict[str, ForTimer] = {}
        self.clock = start
        self.tally: dict[str, Tally] = {rule.id: Tally() for rule in rules}
        self._report(self._engine.set_rules(rules, start))  # arms time triggers only

    def advance(self, until: datetime) -> list[Happening]:
        """Fire every timer due up to ``until``, each at its deadline; the clock ends there."""
        out: list[Happening] = []
        while (deadline := self._engine.next_deadline()) is not None and deadline <= until:
            self.clock = max(self.clock, deadline)
            for key in self._engine.due(self.clock):
                out += self._report(self._engine.fire(key, self.clock), fired=key)
        self.clock = max(self.clock, until)
        return out

    def handle(self, event: SimEvent) -> list[Happening]:
        """Fire the timers due before ``event``, then handle it at its time."""
        out = self.advance(event.time)
        now = self.clock
        if isinstance(event, BusEvent):
            fx = self._engine.on_event(
                event_id=event.event_id,
                event_type=event.event_type,
                data=event.data,
                fired_at=event.fired_at,
                now=now,
                correlation_id=event.correlation_id,
            )
            return out + self._report(fx)
        if isinstance(event, SetState):
            old = self._engine.states.get(event.entity_id)
            new = None
            if event.state is not None:
                same = old is not None and old.state == event.state
                changed = old.last_changed if same and old is not None else now
                new = EntityState(
                    state=event.state,
                    attributes=event.attributes,
                    last_changed=changed,
                    last_updated=now,
                )
            event = StateChange(now, event.event_id, event.entity_id, old, new)
        fx = self._engine.on_state_changed(
            event_id=event.event_id,
            entity_id=event.entity_id,
            old=event.old,
            new=event.new,
            now=now,
            correlation_id=event.correlation_id,
        )
        return out + self._report(fx)

    # --- turning effects into happenings ----------------------------------------------------

    def _report(self, fx: Effects, fired: str | None = None) -> list[Happening]:
        now = self.clock
        out: list[Happening] = []
        shown: set[str] = set()
        for trace in fx.traces:
            if trace.status in TIMER_NOTES:  # shown from the timer records below
                continue
            rule_id = trace.rule_id
            tally = self.tally.setdefault(rule_id, Tally())
            ids = set(trace.command_ids)
            published = {step.message_id for step in trace.steps}
            sent = 0
            for command in fx.commands:
                if command.command_id in ids and command.command_id not in shown:
                    shown.add(command.command_id)
                    out.append(_call(now, command))
                    tally.commands += 1
                    sent += 1
            for event in fx.events:
                if event.message_id in published and event.message_id not in shown:
                    shown.add(event.message_id)
                    out.append(_publish(now, event))
                    tally.events += 1
                    sent += 1
            status = trace.status
            if status not in PAUSED:
                tally.runs[status] += 1
            out.append(self._run(now, trace, fx, quiet=bool(sent) and status in QUIET_STATUSES))
        for command in fx.commands:  # a command no trace claims: still shown, never hidden
            if command.command_id not in shown:
                out.append(_call(now, command))
                self.tally.setdefault(command.rule_id, Tally()).commands += 1
        for key, record in fx.timers.items():
            if not key.startswith("for.") or key == fired:
                self._armed.pop(key, None)
                continue
            if record is not None and record.kind == "for":
                self._armed[key] = record
                out.append(self._for(now, record, armed=True))
            elif (before := self._armed.pop(key, None)) is not None:
                out.append(self._for(now, before, armed=False))
        return out

    def _run(self, now: datetime, trace: RunTrace, fx: Effects, *, quiet: bool) -> Happening:
        rule_id, status, reason = trace.rule_id, trace.status, trace.reason
        if status == "waiting":
            record = fx.timers.get(f"run.{rule_id}.{trace.run_id}")
            until = "" if record is None or record.deadline is None else self.show(record.deadline)
            text = f"waiting until {until} ({reason})" if until else f"waiting ({reason})"
        elif status == "not_run":
            text = f"not run: {reason}"
        else:
            text = f"{status}: {reason}" if reason else status
        record_json: dict[str, JsonValue] = {
            "status": status,
            "reason": reason,
            "run_id": trace.run_id,
            "trace": trace.to_json(),
        }
        return Happening(now, rule_id, "run", text, record_json, quiet=quiet)

    def _for(self, now: datetime, record: ForTimer, *, armed: bool) -> Happening:
        entity = record.entity_id
        value = record.trigger.to_state.state if record.trigger.to_state is not None else "gone"
        due = self.show(record.deadline)
        if armed:
            text = f"for: {entity} is {value}; due at {due} if it holds"
        else:
            text = f"for: {entity} changed; the timer due at {due} is cancelled"
        json_record: dict[str, JsonValue] = {
            "entity_id": entity,
            "armed": armed,
            "deadline": record.deadline.isoformat(),
        }
        return Happening(now, record.rule_id, "for", text, json_record)

    def show(self, when: datetime) -> str:
        """``HH:MM:SS`` in the simulation's zone; with the date when it is not the clock's day."""
        local, today = when.astimezone(self._tz), self.clock.astimezone(self._tz)
        return local.strftime("%H:%M:%S" if local.date() == today.date() else "%Y-%m-%d %H:%M:%S")


def _call(now: datetime, command: CommandOut) -> Happening:
    data = f" {json.dumps(command.data, ensure_ascii=False)}" if command.data else ""
    ids: dict[str, JsonValue] = {"command_id": command.command_id, "run_id": command.run_id}
    if command.event_type is not None:  # an event fired on Home Assistant's bus
        fired: dict[str, JsonValue] = {"event_type": command.event_type, "data": command.data}
        text = f"fire_event {command.event_type}{data}"
        return Happening(now, command.rule_id, "fire_event", text, {**fired, **ids})
    service = f"{command.domain}.{command.service}"
    record: dict[str, JsonValue] = {
        "service": service,
        "target": {key: list(values) for key, values in command.target.items()},
        "data": command.data,
        **ids,
    }
    text = f"call {service} {target_text(command.target)}{data}"
    return Happening(now, command.rule_id, "call", text, record)


def _publish(now: datetime, event: EventOut) -> Happening:
    data = f" {json.dumps(event.data, ensure_ascii=False)}" if event.data else ""
    record: dict[str, JsonValue] = {
        "event_type": event.event_type,
        "data": event.data,
        "message_id": event.message_id,
    }
    return Happening(now, event.rule_id, "publish", f"publish {event.event_type}{data}", record)


def target_text(target: Mapping[str, Sequence[str]]) -> str:
    """``light.a,light.b`` for entity targets; JSON for anything else (areas, devices)."""
    if set(target) <= {"entity_id"}:
        return ",".join(target.get("entity_id", ())) or "(no target)"
    return json.dumps({key: list(values) for key, values in target.items()})


def stamp(when: datetime, tz: tzinfo | None, *, date: bool = False) -> str:
    """``HH:MM:SS`` (or ``YYYY-MM-DD HH:MM:SS``) in ``tz`` (default: the local zone)."""
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def summary_lines(tally: Mapping[str, Tally]) -> list[str]:
    """One line per rule: what it sent and how its runs ended; then the totals."""
    width = max((len(rule_id) for rule_id in tally), default=0)
    lines = []
    for rule_id in sorted(tally):
        t = tally[rule_id]
        sent = _count(t.commands, "command") + (
            f", {_count(t.events, 'event')} published" if t.events else ""
        )
        runs = ", ".join(f"{status} {n}" for status, n in sorted(t.runs.items())) or "none"
        lines.append(f"  {rule_id:<{width}}  {sent}; runs: {runs}")
    commands = sum(t.commands for t in tally.values())
    events = sum(t.events for t in tally.values())
    lines.append(
        f"  {_count(commands, 'command')} and {_count(events, 'event')} would have been sent; "
        "nothing was sent"
    )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Printer:
    """Prints happenings: ``--json`` lines, or text lines ``<time> <rule>: <text>``.

    Text times are ``HH:MM:SS`` under a ``-- <date> (<zone>)`` line whenever the day changes,
    or, ``dated``, a full date and time on every line; ``ids`` ends a call's line with its
    command id (a publish's with its message id).
    """

    def __init__(
        self, *, json_lines: bool, tz: tzinfo | None, dated: bool = False, ids: bool = False
    ) -> None:
        self.json_lines, self._tz, self._dated, self._ids = json_lines, tz, dated, ids
        self._day: str | None = None

    def __call__(self, happening: Happening) -> None:
        if self.json_lines:
            print(json.dumps(happening.to_json(), ensure_ascii=False))
            return
        if happening.quiet:
            return
        local = happening.time.astimezone(self._tz)
        if not self._dated and local.date().isoformat() != self._day:
            self._day = local.date().isoformat()
            print(f"-- {self._day} ({local.tzname()})")
        when = stamp(happening.time, self._tz, date=self._dated)
        sent = happening.record.get("command_id") or happening.record.get("message_id")
        suffix = f"  [{sent}]" if self._ids and sent else ""
        print(f"{when} {happening.rule_id}: {happening.text}{suffix}")

    def summary(
        self, record: dict[str, JsonValue], header: str, tally: Mapping[str, Tally]
    ) -> None:
        """The closing summary: ``record`` (plus per-rule counts) as JSON, or ``header`` and a
        line per rule."""
        if self.json_lines:
            rules: dict[str, JsonValue] = {
                rule_id: {"commands": t.commands, "events": t.events, "runs": dict(t.runs)}
                for rule_id, t in sorted(tally.items())
            }
            print(json.dumps({"what": "summary", **record, "rules": rules}, ensure_ascii=False))
            return
        print(header)
        for line in summary_lines(tally):
            print(line)
