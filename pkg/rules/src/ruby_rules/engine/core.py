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
import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo

from pydantic import JsonValue

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.engine.effects import Effects, RuleEventOut, ended, trigger_summary
from ruby_rules.engine.index import TriggerIndex
from ruby_rules.engine.interpreter import Interpreter, Path, Segment, action_at
from ruby_rules.engine.records import AtTimer, ForTimer, RunTimer, TimerRecord
from ruby_rules.model import Program, Rule, RuleConfig
from ruby_rules.processors.base import TriggerConfig
from ruby_rules.processors.protocols import TriggerProcessor
from ruby_schemas.ha_events import EntityState
from ruby_schemas.rules import RuleFailedV1, RuleFiredV1
from ruby_schemas.traces import RunTrace, TraceStep

TIMER_NOTES = frozenset({"armed", "disarmed"})
"""Trace statuses that note a ``for`` timer armed or cancelled: not runs of the rule."""

LATE_AFTER = timedelta(seconds=30)
"""A trigger or timer handled later than this after its time is late: ``on_missed`` decides.
Below it, the delay is ordinary processing (a backlog after a restart, a busy machine)."""


def trigger_hash(config: TriggerConfig) -> str:
    """A short hash of a trigger's config: an armed timer whose trigger changed is dropped."""
    return hashlib.sha256(config.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


class RuleEngine:
    """The rules, their armed timers and paused runs, and the engine's view of the states."""

    def __init__(self, *, tz: tzinfo | None = None) -> None:
        self._tz = tz
        self._rules: dict[str, Rule] = {}
        self._index = TriggerIndex(())
        self._states: dict[str, EntityState] = {}
        self._timers: dict[str, TimerRecord] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._runs: defaultdict[str, dict[str, RunTimer]] = defaultdict(dict)
        self._waits_entity: defaultdict[str, set[str]] = defaultdict(set)
        self._waits_event: defaultdict[str, set[str]] = defaultdict(set)
        self._queue_seq = 0

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
        return self._timers

    def set_states(self, states: Mapping[str, EntityState]) -> None:
        """Replace the view of current states (at start, from the projection)."""
        self._states = dict(states)

    def restore(self, records: Iterable[TimerRecord]) -> None:
        """Take back the timer records a previous process stored. No effects."""
        for record in records:
            self._remember(record)
            if record.kind == "run":
                self._queue_seq = max(self._queue_seq, record.queued_seq)

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of any timer, or ``None``."""
        while self._heap:
            deadline, key = self._heap[0]
            record = self._timers.get(key)
            if record is not None and record.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)  # superseded or deleted
        return None

    def due(self, now: datetime) -> list[str]:
        """The keys of the timers due at ``now``, earliest first; `fire` each of them."""
        keys: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            record = self._timers.get(key)
            if record is not None and record.deadline == deadline and key not in keys:
                keys.append(key)
        return keys

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
        for key, record in list(self._timers.items()):
            if record.kind == "run":
                continue
            spec = wanted.get(f"{record.rule_id}.{record.trigger_index}")
            if spec is None or spec[2] != record.trigger_hash:
                self._delete(key, effects)
        for entry in self._index.timed:
            rule, index, digest = wanted[f"{entry.rule_id}.{entry.index}"]
            if f"at.{rule.id}.{index}" not in self._timers:
                self._arm_time(rule, index, digest, now, effects)
        return effects

    def _arm_time(self, rule: Rule, index: int, digest: str, after: datetime, fx: Effects) -> None:
        trigger = rule.program.triggers[index]
        fire = trigger.next_fire(self._local(after))
        if fire is None:  # only timed triggers are armed; one that stops firing is not re-armed
            return
        deadline = fire.astimezone(UTC)
        placeholder = TriggerData(
            kind=trigger.config.kind,
            id=self._trigger_name(rule.config, index),
            event_id=f"at.{rule.id}.{index}.{deadline.isoformat()}",
            time=deadline,
        )
        self._put(
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
            latest_only = rule.config.backlog.policy == "latest"
            if latest_only and newer is not None and _supersedes(newer, new, trigger):
                if trigger.matches_change(old, new):
                    self._superseded(rule, entry.index, event_id, entity_id, old, new, newer,
                                     now, effects)  # fmt: skip
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
            hold = trigger.hold
            if hold is None:
                if trigger.matches_change(old, new):
                    self._start(rule, entry.index, data, now, when, effects)
                continue
            key = f"for.{rule.id}.{entry.index}.{entity_id}"
            if trigger.matches_change(old, new) and new is not None:
                since = trigger.changed_at(new)
                self._put(
                    ForTimer(
                        rule.id,
                        since + hold,
                        data,
                        rule.version,
                        entry.index,
                        trigger_hash(config),
                        entity_id,
                        rule.file,
                    ),
                    effects,
                )
                value = trigger.watched_value(new)
                note = self._trace(rule.config, rule.version, rule.file, "", data, now)
                fires = (since + hold).isoformat()
                reason = f"for: {entity_id} is {value}; fires at {fires} if it holds"
                effects.traces.append(ended(note, "armed", reason))
            elif key in self._timers and not trigger.still_holds(new):
                due = self._timers[key].deadline
                self._delete(key, effects)
                value = trigger.watched_value(new)
                note = self._trace(rule.config, rule.version, rule.file, "", data, now)
                before = due.isoformat() if due else "?"
                reason = f"for: {entity_id} changed to {value} before {before}"
                effects.traces.append(ended(note, "disarmed", reason))
        for key in sorted(self._waits_entity.get(entity_id, ())):
            wait = self._wait_trigger(key)
            if wait is not None and wait.matches_change(old, new):
                self._resume(key, now, effects, note=f"wait_for: {entity_id} changed")
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
                self._start(rule, entry.index, info, now, fired_at, effects)
        for key in sorted(self._waits_event.get(event_type, ())):
            wait = self._wait_trigger(key)
            if wait is not None and wait.matches_event(event_type, data):
                self._resume(key, now, effects, note=f"wait_for: event {event_type}")
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
        trace = self._trace(rule.config, rule.version, rule.file, run, data, now)
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
        ``projection`` (default: the engine's own view) before its rule runs."""
        effects = Effects()
        record = self._timers.get(key)
        if record is None or record.deadline is None or record.deadline > now:
            return effects
        if record.kind == "run":
            self._fire_run(record, now, effects)
            return effects
        self._delete(key, effects)
        rule = self._rules.get(record.rule_id)
        if rule is None:
            return effects
        if record.kind == "at":
            self._arm_time(rule, record.trigger_index, record.trigger_hash, now, effects)
            self._start(rule, record.trigger_index, record.trigger, now, record.deadline, effects)
            return effects
        states = self._states if projection is None else projection
        trigger = rule.program.triggers[record.trigger_index]
        current = states.get(record.entity_id or "")
        if not (
            trigger.unchanged(record.trigger.to_state, current) and trigger.still_holds(current)
        ):
            trace = self._trace(rule.config, rule.version, rule.file, "", record.trigger, now)
            reason = f"'for' re-check: {record.entity_id} no longer holds its value"
            effects.traces.append(ended(trace, "not_run", reason))
            return effects
        self._start(rule, record.trigger_index, record.trigger, now, record.deadline, effects)
        return effects

    def _fire_run(self, record: RunTimer, now: datetime, effects: Effects) -> None:
        assert record.deadline is not None  # noqa: S101 - `fire` fires only what has one
        late = self._late(record.rule, record.deadline, now)
        if late is not None:
            self._finish(record, now, effects, status="skipped", reason=late)
            return
        if record.wait and not record.wait_until_time:
            wait = action_at(record.compiled.actions, record.resume_after or (0,))
            if wait.stops_on_timeout():
                self._finish(record, now, effects, status="stopped", reason="wait_for timed out")
                return
            self._resume(record.key, now, effects, note="wait_for timed out, continuing")
            return
        self._resume(record.key, now, effects, note="timer due")

    # --- runs ------------------------------------------------------------------------------

    def _start(
        self,
        rule: Rule,
        index: int,
        trigger: TriggerData,
        now: datetime,
        due: datetime,
        effects: Effects,
    ) -> None:
        config = rule.config
        run = ids.run_id(rule.id, rule.version, str(index), trigger.event_id)
        trace = self._trace(config, rule.version, rule.file, run, trigger, now)
        late = self._late(config, due, now)
        if late is not None:
            effects.traces.append(ended(trace, "skipped", late))
            return
        ctx = self._ctx(trigger, now)
        for position, processor in enumerate(rule.program.conditions):
            condition = processor.config
            try:
                holds = processor.holds(ctx)
            except ValueError as exc:
                effects.traces.append(ended(trace, "failed", f"condition {position}: {exc}"))
                self._failed(rule.config, rule.version, rule.file, run, trigger, str(exc), effects)
                return
            step = TraceStep(at=now, path=f"condition.{position}", kind=condition.kind,
                             result="true" if holds else "false")  # fmt: skip
            trace = trace.model_copy(update={"steps": (*trace.steps, step)})
            if not holds:
                reason = f"condition {position} ({condition.kind}) false"
                effects.traces.append(ended(trace, "not_run", reason))
                return
        key = f"run.{rule.id}.{run}"
        if key in self._timers:  # the same trigger again (a redelivery): same run, same ids
            self._segment(config, rule.program, rule.version, rule.file, run, trigger, now, None,
                          trace, effects, store=False, due=due)  # fmt: skip
            return
        runs = self._runs[rule.id]
        active = [key for key, record in runs.items() if record.status == "waiting"]
        queued = [key for key, record in runs.items() if record.status == "queued"]
        if active and config.mode == "single":
            effects.traces.append(ended(trace, "ignored", "mode single: a run is in flight"))
            return
        if active and config.mode == "restart":
            for other in active:
                self._finish(runs[other], now, effects, "cancelled", "restarted")
        if active and config.mode == "queued":
            if len(queued) >= config.max_runs:
                reason = f"mode queued: {len(queued)} already wait"
                effects.traces.append(ended(trace, "ignored", reason))
                return
            self._queue_seq += 1
            trace = ended(trace, "queued", "mode queued: waits for the run in flight")
            steps = trace.steps
            self._put(
                RunTimer(rule.id, None, trigger, rule.version, run, config, rule.file,
                         status="queued", queued_seq=self._queue_seq, steps=steps,
                         program=rule.program),
                effects,
            )  # fmt: skip
            effects.traces.append(trace)
            return
        if config.mode == "parallel" and len(active) >= config.max_runs:
            reason = f"mode parallel: {len(active)} runs in flight"
            effects.traces.append(ended(trace, "ignored", reason))
            return
        self._segment(config, rule.program, rule.version, rule.file, run, trigger, now, None,
                      trace, effects, due=due)  # fmt: skip

    def _segment(
        self,
        config: RuleConfig,
        program: Program,
        version: str,
        file: str,
        run: str,
        trigger: TriggerData,
        now: datetime,
        resume_after: Path | None,
        trace: RunTrace,
        effects: Effects,
        *,
        store: bool = True,
        due: datetime | None = None,
    ) -> None:
        limit = config.backlog.max_lateness
        interpreter = Interpreter(
            rule_id=config.id,
            version=version,
            run_id=run,
            trigger=trigger,
            ctx=self._ctx(trigger, now),
            now=now,
            not_after=None if limit is None else (due or now) + limit,
            backlog=config.backlog.policy,
        )
        segment: Segment = interpreter.run(program.actions, resume_after)
        effects.commands += segment.commands
        effects.events += segment.events
        trace = trace.model_copy(
            update={
                "steps": (*trace.steps, *segment.steps),
                "command_ids": (*trace.command_ids, *(c.command_id for c in segment.commands)),
                "status": segment.end,
                "reason": segment.reason,
                "updated": now,
            }
        )
        if resume_after is None:
            fired = RuleFiredV1(
                rule_id=config.id,
                rule_version=version,
                file=file,
                trigger_id=trigger.id,
                command_ids=tuple(command.command_id for command in segment.commands),
                run_id=run,
                trigger_event_id=trigger.event_id,
            )
            effects.rule_events.append(RuleEventOut(ids.fired_id(run), "fired", fired, trigger))
        if segment.end == "failed":
            self._failed(config, version, file, run, trigger, segment.reason, effects)
        key = f"run.{config.id}.{run}"
        if store and segment.pause is not None:
            pause = segment.pause
            self._put(
                RunTimer(config.id, pause.deadline, trigger, version, run, config, file,
                         resume_after=pause.at, wait=pause.wait,
                         wait_until_time=pause.wait_until_time, steps=trace.steps,
                         program=program),
                effects,
            )  # fmt: skip
        elif store:
            if key in self._timers:
                self._delete(key, effects)
            self._next_queued(config.id, now, effects)
        effects.traces.append(trace)

    def _resume(self, key: str, now: datetime, effects: Effects, *, note: str) -> None:
        record = self._timers.get(key)
        if record is None or record.kind != "run":
            return
        resumed = TraceStep(at=now, path="resume", kind="timer", result=note)
        trace = self._trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=(*record.steps, resumed))  # fmt: skip
        due = record.deadline if record.deadline is not None and record.deadline <= now else now
        self._segment(record.rule, record.compiled, record.version, record.file, record.run_id,
                      record.trigger, now, record.resume_after, trace, effects,
                      due=due)  # fmt: skip

    def _finish(
        self, record: RunTimer, now: datetime, effects: Effects, status: str, reason: str
    ) -> None:
        trace = self._trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=record.steps)  # fmt: skip
        effects.traces.append(ended(trace, status, reason))
        self._delete(record.key, effects)
        if status != "cancelled":
            self._next_queued(record.rule_id, now, effects)

    def _next_queued(self, rule_id: str, now: datetime, effects: Effects) -> None:
        runs = list(self._runs.get(rule_id, {}).values())
        if any(r.status == "waiting" for r in runs):
            return
        queued = sorted((r for r in runs if r.status == "queued"), key=lambda r: r.queued_seq)
        if not queued:
            return
        record = queued[0]
        self._delete(record.key, effects)
        trace = self._trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=record.steps)  # fmt: skip
        self._segment(record.rule, record.compiled, record.version, record.file, record.run_id,
                      record.trigger, now, None, trace, effects)  # fmt: skip

    def _failed(
        self,
        config: RuleConfig,
        version: str,
        file: str,
        run: str,
        trigger: TriggerData,
        message: str,
        effects: Effects,
    ) -> None:
        failed = RuleFailedV1(
            rule_id=config.id,
            rule_version=version,
            file=file,
            stage="action",
            error_type="RunError",
            error_message=message,
        )
        effects.rule_events.append(RuleEventOut(f"failed-{run}", "failed", failed, trigger))

    # --- helpers ---------------------------------------------------------------------------

    def _local(self, now: datetime) -> datetime:
        return now.astimezone(self._tz)

    def _ctx(self, trigger: TriggerData, now: datetime) -> Context:
        return Context(states=self._states, now=self._local(now), trigger=trigger)

    def _late(self, config: RuleConfig, due: datetime, now: datetime) -> str | None:
        lateness = now - due
        limit = config.backlog.max_lateness
        if limit is not None and lateness > limit:
            return f"late by {lateness}: more than backlog.max_lateness {limit}"
        if lateness <= LATE_AFTER:
            return None
        policy = config.on_missed
        if policy.policy == "skip":
            return f"late by {lateness}: on_missed is skip"
        if policy.max_lateness is not None and lateness > policy.max_lateness:
            return f"late by {lateness}: more than on_missed.max_lateness {policy.max_lateness}"
        return None

    @staticmethod
    def _trigger_name(config: RuleConfig, index: int) -> str:
        return config.triggers[index].id or str(index)

    def _wait_trigger(self, key: str) -> TriggerProcessor | None:
        record = self._timers.get(key)
        if record is None or record.kind != "run" or record.resume_after is None:
            return None
        return action_at(record.compiled.actions, record.resume_after).waits_on()

    def _trace(
        self,
        config: RuleConfig,
        version: str,
        file: str,
        run: str,
        trigger: TriggerData,
        now: datetime,
        *,
        steps: tuple[TraceStep, ...] = (),
    ) -> RunTrace:
        return RunTrace(
            run_id=run,
            rule_id=config.id,
            version=version,
            file=file,
            trigger=trigger_summary(trigger),
            updated=now,
            status="started",
            steps=steps,
        )

    def _put(self, record: TimerRecord, effects: Effects) -> None:
        self._forget(record.key)
        self._remember(record)
        effects.timers[record.key] = record

    def _delete(self, key: str, effects: Effects) -> None:
        self._forget(key)
        effects.timers[key] = None

    def _remember(self, record: TimerRecord) -> None:
        key = record.key
        self._timers[key] = record
        if record.deadline is not None:
            heapq.heappush(self._heap, (record.deadline, key))
        if record.kind == "run":
            self._runs[record.rule_id][key] = record
            wait = self._wait_trigger(key) if record.wait and not record.wait_until_time else None
            watch = wait.watch() if wait is not None else None
            for entity_id in watch.entities if watch is not None else ():
                self._waits_entity[entity_id].add(key)
            for event_type in watch.event_types if watch is not None else ():
                self._waits_event[event_type].add(key)

    def _forget(self, key: str) -> None:
        record = self._timers.pop(key, None)
        if record is None or record.kind != "run":
            return
        self._runs[record.rule_id].pop(key, None)
        for waits in (self._waits_entity, self._waits_event):
            for keys in waits.values():
                keys.discard(key)


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
