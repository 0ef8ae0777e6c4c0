"""The trigger index: an event reaches only the triggers that can fire on it.

State triggers are found by entity id, event triggers by event type, with one dictionary
lookup each, so matching costs the same with 10 rules or 10,000. Time triggers are not indexed
here: the engine arms a timer for each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ruby_rules.model import Rule
from ruby_rules.processors.triggers.event import EventTriggerConfig
from ruby_rules.processors.triggers.numeric_state import NumericStateTriggerConfig
from ruby_rules.processors.triggers.state import StateTriggerConfig
from ruby_rules.processors.triggers.time import TimeTriggerConfig
from ruby_rules.processors.triggers.time_pattern import TimePatternTriggerConfig


@dataclass(frozen=True, slots=True)
class Entry:
    """One trigger of one rule: the rule's id and the trigger's position."""

    rule_id: str
    index: int


class TriggerIndex:
    """Triggers by entity id and by event type; time triggers listed apart. Immutable."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        by_entity: defaultdict[str, list[Entry]] = defaultdict(list)
        by_event: defaultdict[str, list[Entry]] = defaultdict(list)
        timed: list[Entry] = []
        for rule in rules:
            for index, trigger in enumerate(rule.config.triggers):
                entry = Entry(rule.id, index)
                if isinstance(trigger, StateTriggerConfig | NumericStateTriggerConfig):
                    for entity_id in trigger.entity_id:
                        by_entity[entity_id].append(entry)
                elif isinstance(trigger, EventTriggerConfig):
                    by_event[trigger.event_type].append(entry)
                elif isinstance(trigger, TimeTriggerConfig | TimePatternTriggerConfig):
                    timed.append(entry)
                else:
                    raise TypeError(f"trigger kind {trigger.kind!r} has no place in the index")
        self._by_entity = {key: tuple(value) for key, value in by_entity.items()}
        self._by_event = {key: tuple(value) for key, value in by_event.items()}
        self.timed: tuple[Entry, ...] = tuple(timed)

    def for_entity(self, entity_id: str) -> tuple[Entry, ...]:
        """The triggers watching ``entity_id``."""
        return self._by_entity.get(entity_id, ())

    def for_event(self, event_type: str) -> tuple[Entry, ...]:
        """The triggers listening for ``event_type``."""
        return self._by_event.get(event_type, ())
