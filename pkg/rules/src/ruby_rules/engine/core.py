"""`RuleEngine`: events and the clock in, `Effects` out. Pure: no I/O, no clock of its own.

Promises, for a caller that applies every `Effects` it is given (see `Effects` for the order):
- An event reaches only the triggers indexed under its entity or event type.
- Each run's ids derive from rule id, version, trigger and triggering message, so handling the
  same message twice, or firing the same timer twice, produces the same commands.
- ``for``, ``delay``, ``wait_for`` and time triggers are timer records; `restore` takes back
  what a previous process stored, and `fire` handles a due one, applying the rule's
  ``on_missed`` policy when it is late.
- A paused run keeps the definition it started with; changing or removing its rule lets it
  finish. Removing a rule drops its armed ``for`` and time triggers.
Not thread-safe: the caller serialises calls (one event loop, one lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo

from pydantic import JsonValue

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.engine.effects import Effects, ended
from ruby_rules.engine.index import TriggerIndex
from ruby_rules.engine.records import AtTimer, ForTimer, TimerRecord
from ruby_rules.engine.runs import Runs, new_trace
from ruby_rules.engine.timers import TimerTable
from ruby_rules.model import Rule, RuleConfig
from ruby_rules.processors.base import TriggerConfig
from ruby_rules.processors.protocols import TriggerProcessor
from ruby_schemas.ha_events import EntityState

TIMER_NOTES = frozenset({"armed", "disarmed"})
"""Trace statuses that note a ``for`` timer armed or cancelled: not runs of the rule."""


def trigger_hash(config: TriggerConfig) -> str:
    """A short hash of a trigger's config: an armed timer whose trigger changed is dropped.
    Fields left out do not count (see `ruby_rules.model.rule_version`)."""
    dumped = config.model_dump_json(by_alias=True, exclude_none=True)
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]


class RuleEngine:
    """The rules, their armed timers and paused runs, and the engine's view of the states."""

    def __init__(self, *, tz: tzinfo | None = None) -> None:
        self._tz = tz
        self._rules: dict[str, Rule] = {}
        self._index = TriggerIndex(())
        self._states: dict[str, EntityState] = {}
        self._timers = TimerTable()
        self._runs = Runs(self._timers, self._ctx)

    # --- what it holds ---------------------------------------------------------------------

    @property
    def rules(self) -> Mapping[str, Rule]:
        """The current rules by id."""
        return self._rules

    @property
    def states(self) -> Mapping[str, EntityState]:
        """The engine's view of current states."""
        return self._states

    @property
    def timers(self) -> Mapping[str, TimerRecord]:
        """Every armed timer and paused or queued run, by key."""
        return self._timers.records

    def set_states(self, states: Mapping[str, EntityState]) -> None:
        """Replace the view of current states (at start, from the projection)."""
        self._states = dict(states)

    def restore(self, records: Iterable[TimerRecord]) -> None:
        """Take back the timer records a previous process stored. No effects."""
        for record in records:
            self._timers.put(record)
            if record.kind == "run" and record.status == "queued":
                self._runs.queue_seq = max(self._runs.queue_seq, record.queued_seq)

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of any timer, or ``None``."""
        return self._timers.next_deadline()

    def due(self, now: datetime) -> list[str]:
        """The keys of the timers due at ``now``, earliest first; `fire` each of them."""
        return self._timers.due(now)

    # --- rules -----------------------------------------------------------------------------

    def set_rules(self, rules: Iterable[Rule], now: datetime) -> Effects:
        """Make ``rules`` the rule set: arm time triggers, drop timers of removed triggers."""
        effects = Effects()
        self._rules = {rule.id: rule for rule in rules}
        self._index = TriggerIndex(self._rules.values())
        wanted: dict[str, tuple[Rule, int, str]] = {}
        for rule in self._rules.values():
            for index, trigger in enumerate(rule.config.triggers):
                wanted[f"{rule.id}.{index}"] = (rule, index, trigger_hash(trigger))
        for key, record in list(self._timers.records.items()):
            if record.kind == "run":
                continue
            spec = wanted.get(f"{record.rule_id}.{record.trigger_index}")
            if spec is None or spec[2] != record.trigger_hash:
                self._timers.remove(key, effects)
        for entry in self._index.timed:
            rule, index, digest = wanted[f"{entry.rule_id}.{entry.index}"]
            if f"at.{rule.id}.{index}" not in self._timers.records:
                self._arm_time(rule, index, digest, now, effects)
        return effects

    def _arm_time(self, rule: Rule, index: int, digest: str, after: datetime, fx: Effects) -> None:
        trigger = rule.program.triggers[index]
        fire = trigger.next_fire(self._local(after), self._states)
        if fire is None:  # not timed, or no instant now (an entity it reads is unknown)
            self._timers.remove_if_held(f"at.{rule.id}.{index}", fx)  # it read an entity gone
            return
        deadline = fire.astimezone(UTC)
        key = f"at.{rule.id}.{index}"
        held = self._timers.records.get(key)
        if isinstance(held, AtTimer) and held.deadline == deadline and held.trigger_hash == digest:
            return  # re-armed by a change that did not move its instant
        placeholder = TriggerData(
            kind=trigger.config.kind,
            id=self._trigger_name(rule.config, index),
            event_id=f"at.{rule.id}.{index}.{deadline.isoformat()}",
            time=deadline,
        )
        self._timers.store(
            AtTimer(rule.id, deadline, placeholder, rule.version, index, digest, rule.file),
            fx,
        )

    # --- events ----------------------------------------------------------------------------

    def on_state_changed(
        self,
        *,
        event_id: str,
        entity_id: str,
        old: EntityState | None,
        new: EntityState | None,
        now: datetime,
        correlation_id: str | None = None,
        reconciled: bool = False,
    ) -> Effects:
        """A state change: update the view, fire, arm or cancel triggers, resume waits.

        A reconciled change without an old state is the gateway learning an entity it had
        never seen (its first start, or an entity created while it was away): the view learns
        it, but no trigger fires, as Home Assistant fires none for its entities at start-up.

        A change older than the view's version of the entity (read from the projection at a
        restart) is a backlog's: ``latest`` rules skip it unless the newer version changed
        only attributes (ADR-0031).
        """
        effects = Effects()
        current = self._states.get(entity_id)
        newer = _later(current, new)  # the view already holds a later version
        if new is None:
            self._states.pop(entity_id, None)
        elif newer is None:
            self._states[entity_id] = new
        if reconciled and old is None:
            return effects
        earlier = (
            current is not None and new is not None and current.last_updated < new.last_updated
        )
        if reconciled and earlier:
            old = current  # what the rules last saw, not the gateway's stored guess
        when = new.last_updated if new is not None else now
        for entry in self._index.for_entity(entity_id):
            rule = self._rules[entry.rule_id]
            config = rule.config.triggers[entry.index]
            trigger = rule.program.triggers[entry.index]
            if entry.timed:  # its instant is read from this entity: arm it anew
                self._arm_time(rule, entry.index, trigger_hash(config), now, effects)
                continue
            data = TriggerData(
                kind=config.kind,
                id=self._trigger_name(rule.config, entry.index),
                event_id=event_id,
                time=when,
                entity_id=entity_id,
                from_state=old,
                to_state=new,
                correlation_id=correlation_id,
            )
            try:
                matched = trigger.matches_change(old, new, self._states)
            except ValueError as exc:  # it cannot tell (a template failed): traced, not fired
                note = new_trace(rule.config, rule.version, rule.file, "", data, now)
                effects.traces.append(ended(note, "failed", f"trigger {data.id}: {exc}"))
                matched = False
            latest_only = rule.config.backlog.policy == "latest"
            if latest_only and newer is not None and _supersedes(newer, new, trigger):
                if matched:
                    self._superseded(rule, entry.index, event_id, entity_id, old, new, newer,
                                     now, effects)  # fmt: skip
                continue
            hold = trigger.hold
            if hold is None:
                if matched:
                    self._runs.start(rule, entry.index, data, now, when, effects)
                continue
            held = trigger.held_under(entity_id)
            key = f"for.{rule.id}.{entry.index}.{held}"
            if matched and new is not None:
                since = trigger.changed_at(new)
                self._timers.store(
                    ForTimer(
                        rule.id,
                        since + hold,
                        data,
                        rule.version,
                        entry.index,
                        trigger_hash(config),
                        held,
                        rule.file,
                    ),
                    effects,
                )
                value = trigger.watched_value(new)
                note = new_trace(rule.config, rule.version, rule.file, "", data, now)
                fires = (since + hold).isoformat()
                reason = f"for: {entity_id} is {value}; fires at {fires} if it holds"
                effects.traces.append(ended(note, "armed", reason))
            elif key in self._timers.records and not trigger.still_holds(new, self._states):
                due = self._timers.records[key].deadline
                self._timers.remove(key, effects)
                value = trigger.watched_value(new)
                note = new_trace(rule.config, rule.version, rule.file, "", data, now)
                before = due.isoformat() if due else "?"
                reason = f"for: {entity_id} changed to {value} before {before}"
                effects.traces.append(ended(note, "disarmed", reason))
        for key in self._timers.waits_on_entity(entity_id):
            wait = self._timers.wait_trigger(key)
            try:
                resumes = wait is not None and wait.matches_change(old, new, self._states)
            except ValueError:  # it cannot tell (a template failed): the wait goes on
                resumes = False
            if resumes and wait is not None:
                waited = TriggerData(wait.config.kind, "0", event_id, when, entity_id, old, new)
                self._runs.resume(key, now, effects, note=f"wait_for: {entity_id} changed",
                                  waited=waited)  # fmt: skip
        return effects

    def on_event(
        self,
        *,
        event_id: str,
        event_type: str,
        data: Mapping[str, JsonValue],
        fired_at: datetime,
        now: datetime,
        correlation_id: str | None = None,
    ) -> Effects:
        """A Home Assistant bus event: fire matching event triggers, resume matching waits."""
        effects = Effects()
        for entry in self._index.for_event(event_type):
            rule = self._rules[entry.rule_id]
            trigger = rule.program.triggers[entry.index]
            if trigger.matches_event(event_type, data):
                info = TriggerData(
                    kind=trigger.config.kind,
                    id=self._trigger_name(rule.config, entry.index),
                    event_id=event_id,
                    time=fired_at,
                    event_type=event_type,
                    event_data=dict(data),
                    correlation_id=correlation_id,
                )
                self._runs.start(rule, entry.index, info, now, fired_at, effects)
        for key in self._timers.waits_on_event(event_type):
            wait = self._timers.wait_trigger(key)
            if wait is not None and wait.matches_event(event_type, data):
                waited = TriggerData(wait.config.kind, "0", event_id, fired_at,
                                     event_type=event_type, event_data=dict(data))  # fmt: skip
                self._runs.resume(key, now, effects, note=f"wait_for: event {event_type}",
                                  waited=waited)  # fmt: skip
        return effects

    def _superseded(
        self,
        rule: Rule,
        index: int,
        event_id: str,
        entity_id: str,
        old: EntityState | None,
        new: EntityState | None,
        newer: EntityState,
        now: datetime,
        effects: Effects,
    ) -> None:
        data = TriggerData(
            kind=rule.config.triggers[index].kind,
            id=self._trigger_name(rule.config, index),
            event_id=event_id,
            time=new.last_updated if new is not None else now,
            entity_id=entity_id,
            from_state=old,
            to_state=new,
        )
        run = ids.run_id(rule.id, rule.version, str(index), event_id)
        trace = new_trace(rule.config, rule.version, rule.file, run, data, now)
        reason = (
            f"superseded: {entity_id} is already {newer.state!r} since "
            f"{newer.last_updated.isoformat()} (backlog policy latest)"
        )
        effects.traces.append(ended(trace, "skipped", reason))

    # --- timers ----------------------------------------------------------------------------

    def fire(
        self, key: str, now: datetime, projection: Mapping[str, EntityState] | None = None
    ) -> Effects:
        """Handle the due timer ``key``. A ``for`` trigger is re-checked against
        ``projection`` (default: the engine's own view) before its rule runs: its entity as
        the projection holds it, other entities as the view does."""
        effects = Effects()
        record = self._timers.records.get(key)
        if record is None or record.deadline is None or record.deadline > now:
            return effects
        if record.kind == "run":
            if record.status == "waiting":
                self._runs.fire(record, now, effects)
            return effects
        self._timers.remove(key, effects)
        rule = self._rules.get(record.rule_id)
        if rule is None:
            return effects
        if record.kind == "at":
            self._arm_time(rule, record.trigger_index, record.trigger_hash, now, effects)
            self._runs.start(
                rule, record.trigger_index, record.trigger, now, record.deadline, effects
            )
            return effects
        trigger = rule.program.triggers[record.trigger_index]
        current = (self._states if projection is None else projection).get(record.entity_id or "")
        states = self._states if projection is None else {**self._states, **projection}
        if not (
            trigger.unchanged(record.trigger.to_state, current)
            and trigger.still_holds(current, states)
        ):
            trace = new_trace(rule.config, rule.version, rule.file, "", record.trigger, now)
            reason = f"'for' re-check: {record.entity_id} no longer holds its value"
            effects.traces.append(ended(trace, "not_run", reason))
            return effects
        self._runs.start(rule, record.trigger_index, record.trigger, now, record.deadline, effects)
        return effects

    # --- helpers ---------------------------------------------------------------------------

    def _local(self, now: datetime) -> datetime:
        return now.astimezone(self._tz)

    def _ctx(self, trigger: TriggerData, now: datetime) -> Context:
        return Context(states=self._states, now=self._local(now), trigger=trigger)

    @staticmethod
    def _trigger_name(config: RuleConfig, index: int) -> str:
        return config.triggers[index].id or str(index)


def _later(state: EntityState | None, than: EntityState | None) -> EntityState | None:
    """``state`` if it is a later version of the entity than ``than``, else None."""
    if state is None or than is None or state.last_updated <= than.last_updated:
        return None
    return state


def _supersedes(newer: EntityState, new: EntityState | None, trigger: TriggerProcessor) -> bool:
    """Whether ``newer`` is a later change of what ``trigger`` watches than ``new``: of the
    state (``last_changed``), or of any attribute for an attribute trigger (``last_updated``).
    A later version that changed only attributes does not supersede a state change: the
    state trigger would not fire on it, and the state change must still count."""
    if new is None:
        return False
    return trigger.changed_at(newer) > trigger.changed_at(new)
