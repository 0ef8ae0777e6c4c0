"""The engine's table of durable timers: records by key, deadlines in order, runs by rule, and
the paused waits each state change or bus event may resume. Pure bookkeeping: no effects."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from ruby_rules.engine.effects import Effects
from ruby_rules.engine.interpreter import action_at
from ruby_rules.engine.records import RunTimer, TimerRecord
from ruby_rules.processors.protocols import TriggerProcessor


class TimerTable:
    """Every armed timer and paused or queued run. Not thread-safe (the engine's one caller)."""

    def __init__(self) -> None:
        self._records: dict[str, TimerRecord] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._runs: defaultdict[str, dict[str, RunTimer]] = defaultdict(dict)
        self._by_entity: defaultdict[str, set[str]] = defaultdict(set)
        self._by_event: defaultdict[str, set[str]] = defaultdict(set)
        self._every: set[str] = set()

    @property
    def records(self) -> Mapping[str, TimerRecord]:
        """Every record by key."""
        return self._records

    def runs(self, rule_id: str) -> Mapping[str, RunTimer]:
        """The paused and queued runs of one rule, by key."""
        return self._runs.get(rule_id, {})

    def waits_on_entity(self, entity_id: str) -> list[str]:
        """The keys of runs paused in a wait a change of ``entity_id`` may end, sorted."""
        return sorted(self._by_entity.get(entity_id, set()) | self._every)

    def waits_on_event(self, event_type: str) -> list[str]:
        """The keys of runs paused in a wait an event of ``event_type`` may end, sorted."""
        return sorted(self._by_event.get(event_type, ()))

    def wait_trigger(self, key: str) -> TriggerProcessor | None:
        """The trigger the run ``key`` is paused waiting for, if it waits on one."""
        record = self._records.get(key)
        if record is None or record.kind != "run" or record.status != "waiting":
            return None
        return action_at(record.compiled.actions, record.resume_after).waits_on()

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of any timer, or ``None``."""
        while self._heap:
            deadline, key = self._heap[0]
            record = self._records.get(key)
            if record is not None and record.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)  # superseded or deleted
        return None

    def due(self, now: datetime) -> list[str]:
        """The keys of the timers due at ``now``, earliest first."""
        keys: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            record = self._records.get(key)
            if record is not None and record.deadline == deadline and key not in keys:
                keys.append(key)
        return keys

    def put(self, record: TimerRecord) -> None:
        """Hold ``record``, replacing the one under its key."""
        self.drop(record.key)
        key = record.key
        self._records[key] = record
        if record.deadline is not None:
            heapq.heappush(self._heap, (record.deadline, key))
        if record.kind != "run":
            return
        self._runs[record.rule_id][key] = record
        waits = record.status == "waiting" and record.wait and not record.wait_until_time
        wait = self.wait_trigger(key) if waits else None
        if wait is not None:
            watch = wait.watch()
            for entity_id in watch.entities:
                self._by_entity[entity_id].add(key)
            for event_type in watch.event_types:
                self._by_event[event_type].add(key)
            if watch.all_entities:
                self._every.add(key)

    def drop(self, key: str) -> None:
        """Forget the record under ``key``, if any."""
        record = self._records.pop(key, None)
        if record is None or record.kind != "run":
            return
        self._runs[record.rule_id].pop(key, None)
        for waits in (self._by_entity, self._by_event):
            for keys in waits.values():
                keys.discard(key)
        self._every.discard(key)

    def store(self, record: TimerRecord, effects: Effects) -> None:
        """Hold ``record`` and have the caller store it."""
        self.put(record)
        effects.timers[record.key] = record

    def remove_if_held(self, key: str, effects: Effects) -> None:
        """`remove` ``key`` if a record is held under it."""
        if key in self._records:
            self.remove(key, effects)

    def remove(self, key: str, effects: Effects) -> None:
        """Forget ``key`` and have the caller delete it."""
        self.drop(key)
        effects.timers[key] = None
