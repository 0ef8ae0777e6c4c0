"""The trigger index: an event reaches only the triggers that can fire on it.

Each trigger says what it watches (`ruby_rules.processors.protocols.Watch`): entities, event
types, or the clock. Triggers are found by entity id or event type with one dictionary lookup
each, so matching costs the same with 10 rules or 10,000. Timed triggers are listed apart: the
engine arms a timer for each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ruby_rules.model import Rule


@dataclass(frozen=True, slots=True)
class Entry:
    """One trigger of one rule: the rule's id and the trigger's position."""

    rule_id: str
    index: int
    timed: bool = False
    """A timed trigger: a change of an entity it watches re-arms it rather than firing it."""


class TriggerIndex:
    """Triggers by entity id and by event type; timed triggers listed apart. Immutable."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        by_entity: defaultdict[str, list[Entry]] = defaultdict(list)
        by_event: defaultdict[str, list[Entry]] = defaultdict(list)
        timed: list[Entry] = []
        every: list[Entry] = []
        for rule in rules:
            for index, trigger in enumerate(rule.program.triggers):
                watch = trigger.watch()
                entry = Entry(rule.id, index, watch.timed)
                if watch.all_entities:
                    every.append(entry)
                for entity_id in watch.entities:
                    by_entity[entity_id].append(entry)
                for event_type in watch.event_types:
                    by_event[event_type].append(entry)
                if watch.timed:
                    timed.append(entry)
        self._every = tuple(every)
        self._by_entity = {key: (*value, *every) for key, value in by_entity.items()}
        self._by_event = {key: tuple(value) for key, value in by_event.items()}
        self.timed: tuple[Entry, ...] = tuple(timed)

    def for_entity(self, entity_id: str) -> tuple[Entry, ...]:
        """The triggers watching ``entity_id``, then those watching every entity."""
        return self._by_entity.get(entity_id, self._every)

    def for_event(self, event_type: str) -> tuple[Entry, ...]:
        """The triggers listening for ``event_type``."""
        return self._by_event.get(event_type, ())
