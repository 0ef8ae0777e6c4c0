"""Test helpers: a `RuleEngine` driven the way the engine service drives it, without NATS.

`Bench` keeps the timer records the engine asks it to store *as the JSON the service writes
to its KV bucket*, and `Bench.restart` builds a new engine from that JSON alone, as a restarted
engine process does: a test of durability goes through the stored form, never through objects
shared with the engine that wrote them. Time is given, never read from a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from pydantic import JsonValue

from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.loader import load_text
from ruby_rules.model import Rule
from ruby_schemas.ha_events import EntityState


def state(value: str, at: datetime, **attributes: JsonValue) -> EntityState:
    """An entity state that changed at ``at``."""
    return EntityState(state=value, attributes=attributes, last_changed=at, last_updated=at)


def rules_of(text: str, name: str = "t.yaml") -> tuple[Rule, ...]:
    """The rules of a rule file's text; `AssertionError` listing the errors if any."""
    result = load_text(text, name)
    assert result.ok, [str(error) for error in result.errors]
    return result.rules


@dataclass(slots=True)
class Bench:
    """One engine, its stored records (key to JSON) and everything it decided so far.

    Not thread-safe; each call applies its effects' records before returning them.
    """

    rules: tuple[Rule, ...]
    now: datetime
    tz: tzinfo = UTC
    states: dict[str, EntityState] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)
    """The timer records, as stored."""
    history: Effects = field(default_factory=Effects)
    """Every effect so far, in order."""
    engine: RuleEngine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = RuleEngine(tz=self.tz)
        self.engine.set_states(self.states)
        self.engine.restore(read_record(raw) for raw in self.stored.values())
        self._apply(self.engine.set_rules(self.rules, self.now))

    def change(self, entity_id: str, value: str, at: datetime, **attributes: JsonValue) -> Effects:
        """``entity_id`` takes ``value`` at ``at`` (timers due before are fired first)."""
        self.advance(at)
        old, new = self.states.get(entity_id), state(value, at, **attributes)
        self.states[entity_id] = new
        return self._apply(
            self.engine.on_state_changed(
                event_id=f"{entity_id}@{at.isoformat()}",
                entity_id=entity_id,
                old=old,
                new=new,
                now=at,
            )
        )

    def event(self, event_type: str, at: datetime, **data: JsonValue) -> Effects:
        """A bus event of ``event_type`` at ``at`` (timers due before are fired first)."""
        self.advance(at)
        return self._apply(
            self.engine.on_event(
                event_id=f"{event_type}@{at.isoformat()}",
                event_type=event_type,
                data=data,
                fired_at=at,
                now=at,
            )
        )

    def advance(self, to: datetime) -> Effects:
        """Fire every timer due up to ``to``, each at its own deadline, in order."""
        total = Effects()
        while (deadline := self.engine.next_deadline()) is not None and deadline <= to:
            self.now = max(self.now, deadline)
            for key in self.engine.due(self.now):
                total.extend(self._apply(self.engine.fire(key, self.now)))
        self.now = max(self.now, to)
        return total

    def restart(self, rules: Iterable[Rule] | None = None) -> Bench:
        """A new engine restored from the stored JSON only (the records), with the same
        states, as a restarted engine process starts; this one must not be used after."""
        return Bench(
            tuple(self.rules if rules is None else rules),
            self.now,
            self.tz,
            dict(self.states),
            dict(self.stored),
            self.history,
        )

    def command_ids(self) -> list[str]:
        """The id of every command sent so far, in order (repeated ones included)."""
        return [command.command_id for command in self.history.commands]

    def data(self, key: str) -> list[JsonValue]:
        """The value of ``key`` in every command's data so far, in order."""
        return [command.data.get(key) for command in self.history.commands]

    def _apply(self, effects: Effects) -> Effects:
        for key, record in effects.timers.items():
            if record is None:
                self.stored.pop(key, None)
            else:
                self.stored[key] = record.to_json()
        self.history.extend(effects)
        return effects


def by_status(effects: Effects) -> Mapping[str, list[str]]:
    """The reasons of the traces in ``effects``, by status."""
    found: dict[str, list[str]] = {}
    for trace in effects.traces:
        found.setdefault(trace.status, []).append(trace.reason)
    return found
