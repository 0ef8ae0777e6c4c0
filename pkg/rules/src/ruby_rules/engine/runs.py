"""A rule's runs: started on a trigger, executed a stretch at a time, paused in a timer record,
resumed, finished, cancelled; and the ``mode`` and lateness policies that decide which run.

Pure: `Runs` decides and writes what it decided into the `Effects` it is given; the engine
(`ruby_rules.engine.core`) calls it when a trigger fires or a run's timer is due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.engine.effects import (
    Effects,
    RuleEventOut,
    bounded,
    bounded_ids,
    ended,
    trigger_summary,
)
from ruby_rules.engine.interpreter import Interpreter, Path, Segment, action_at
from ruby_rules.engine.records import QueuedRun, RunTimer, WaitingRun
from ruby_rules.engine.timers import TimerTable
from ruby_rules.model import Program, Rule, RuleConfig
from ruby_rules.variables import Scope, assign, render_variables, wait_value
from ruby_schemas.primitives import JsonObject
from ruby_schemas.rules import RuleFailedV1, RuleFiredV1
from ruby_schemas.traces import RunTrace, TraceStep

LATE_AFTER = timedelta(seconds=30)
"""A trigger or timer handled later than this after its time is late: ``on_missed`` decides.
Below it, the delay is ordinary processing (a backlog after a restart, a busy machine)."""


class Runs:
    """Starts, resumes and ends runs, keeping paused and queued ones in ``timers``.

    ``context`` gives what a run sees (the engine's states, the local time). Not thread-safe.
    """

    def __init__(
        self, timers: TimerTable, context: Callable[[TriggerData, datetime], Context]
    ) -> None:
        self._timers, self._ctx = timers, context
        self.queue_seq = 0
        """The last place given in a queue (restored from records after a restart)."""

    def fire(self, record: WaitingRun, now: datetime, effects: Effects) -> None:
        """The run's deadline passed: skip it if late, end it on a wait's timeout that stops
        it, else resume it."""
        late = lateness(record.rule, record.deadline, now)
        if late is not None:
            self._finish(record, now, effects, status="skipped", reason=late)
            return
        if record.wait and not record.wait_until_time:
            wait = action_at(record.compiled.actions, record.resume_after)
            if wait.stops_on_timeout():
                self._finish(record, now, effects, status="stopped", reason="wait_for timed out")
                return
            self.resume(record.key, now, effects, note="wait_for timed out, continuing")
            return
        waited = None
        if record.wait:  # the waited-for time trigger's instant came
            trigger = action_at(record.compiled.actions, record.resume_after).waits_on()
            kind = "time" if trigger is None else trigger.config.kind
            waited = TriggerData(kind, "0", f"{record.key}@{record.deadline}", record.deadline)
        self.resume(record.key, now, effects, note="timer due", waited=waited)

    def start(
        self,
        rule: Rule,
        index: int,
        trigger: TriggerData,
        now: datetime,
        due: datetime,
        effects: Effects,
    ) -> None:
        """``rule``'s trigger ``index`` fired: check the lateness and the conditions, apply the
        mode, then run the first stretch (or, for a redelivery, recompute it with the same ids).
        """
        config = rule.config
        run = ids.run_id(rule.id, rule.version, str(index), trigger.event_id)
        trace = new_trace(config, rule.version, rule.file, run, trigger, now)
        late = lateness(config, due, now)
        if late is not None:
            effects.traces.append(ended(trace, "skipped", late))
            return
        ctx = self._ctx(trigger, now)
        try:
            variables = render_variables(config.variables or {}, ctx)
        except ValueError as exc:
            effects.traces.append(ended(trace, "failed", f"variables: {exc}"))
            self._failed(rule.config, rule.version, rule.file, run, trigger, str(exc), effects)
            return
        ctx = replace(ctx, variables=variables)
        scopes = (variables,) if variables else ()
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
        if key in self._timers.records:  # the same trigger again (a redelivery): same run, same ids
            self._segment(config, rule.program, rule.version, rule.file, run, trigger, now, None,
                          trace, effects, store=False, due=due, variables=scopes)  # fmt: skip
            return
        runs = self._timers.runs(rule.id)
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
            self.queue_seq += 1
            trace = ended(trace, "queued", "mode queued: waits for the run in flight")
            steps = trace.steps
            self._timers.store(
                QueuedRun(rule_id=rule.id, trigger=trigger, version=rule.version, run_id=run,
                          rule=config, file=rule.file, steps=steps, program=rule.program,
                          variables=scopes, queued_seq=self.queue_seq),
                effects,
            )  # fmt: skip
            effects.traces.append(trace)
            return
        if config.mode == "parallel" and len(active) >= config.max_runs:
            reason = f"mode parallel: {len(active)} runs in flight"
            effects.traces.append(ended(trace, "ignored", reason))
            return
        self._segment(config, rule.program, rule.version, rule.file, run, trigger, now, None,
                      trace, effects, due=due, variables=scopes)  # fmt: skip

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
        variables: tuple[Scope, ...] = (),
        loops: JsonObject | None = None,
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
            variables=variables,
            loops=loops,
        )
        segment: Segment = interpreter.run(program.actions, resume_after)
        effects.commands += segment.commands
        effects.events += segment.events
        trace = trace.model_copy(
            update={
                "steps": bounded((*trace.steps, *segment.steps)),
                "command_ids": bounded_ids(
                    (*trace.command_ids, *(c.command_id for c in segment.commands))
                ),
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
            self._timers.store(
                WaitingRun(rule_id=config.id, trigger=trigger, version=version, run_id=run,
                           rule=config, file=file, steps=trace.steps, program=program,
                           deadline=pause.deadline, resume_after=pause.at, wait=pause.wait,
                           wait_until_time=pause.wait_until_time,
                           variables=segment.variables, loops=segment.loops),
                effects,
            )  # fmt: skip
        elif store:
            if key in self._timers.records:
                self._timers.remove(key, effects)
            self._next_queued(config.id, now, effects)
        effects.traces.append(trace)

    def resume(
        self,
        key: str,
        now: datetime,
        effects: Effects,
        *,
        note: str,
        waited: TriggerData | None = None,
    ) -> None:
        """Run the next stretch of the paused run ``key`` (``note`` says why, in its trace).

        A run paused in a ``wait_for`` gets the variable ``wait``: ``trigger`` (``waited``, the
        trigger that ended the wait, as a template reads a trigger; None on a timeout) and
        ``remaining`` (seconds left of the timeout; None when the wait was on a time trigger,
        whose instant the record keeps instead of the timeout).
        """
        record = self._timers.records.get(key)
        if record is None or record.kind != "run" or record.status != "waiting":
            return
        resumed = TraceStep(at=now, path="resume", kind="timer", result=note)
        trace = new_trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=(*record.steps, resumed))  # fmt: skip
        due = record.deadline if record.deadline is not None and record.deadline <= now else now
        scopes = [dict(scope) for scope in record.variables] or [{}]
        if record.wait:
            assign(scopes, "wait", wait_value(record.deadline, record.wait_until_time, waited, now))
        self._segment(record.rule, record.compiled, record.version, record.file, record.run_id,
                      record.trigger, now, record.resume_after, trace, effects, due=due,
                      variables=tuple(scopes), loops=record.loops)  # fmt: skip

    def _finish(
        self, record: RunTimer, now: datetime, effects: Effects, status: str, reason: str
    ) -> None:
        trace = new_trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=record.steps)  # fmt: skip
        effects.traces.append(ended(trace, status, reason))
        self._timers.remove(record.key, effects)
        if status != "cancelled":
            self._next_queued(record.rule_id, now, effects)

    def _next_queued(self, rule_id: str, now: datetime, effects: Effects) -> None:
        runs = list(self._timers.runs(rule_id).values())
        if any(r.status == "waiting" for r in runs):
            return
        queued = sorted((r for r in runs if r.status == "queued"), key=lambda r: r.queued_seq)
        if not queued:
            return
        record = queued[0]
        self._timers.remove(record.key, effects)
        trace = new_trace(record.rule, record.version, record.file, record.run_id,
                            record.trigger, now, steps=record.steps)  # fmt: skip
        self._segment(record.rule, record.compiled, record.version, record.file, record.run_id,
                      record.trigger, now, None, trace, effects,
                      variables=record.variables)  # fmt: skip

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


def lateness(config: RuleConfig, due: datetime, now: datetime) -> str | None:
    """Why a run due at ``due`` is skipped at ``now`` (``on_missed``, ``max_lateness``), or None."""
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


def new_trace(
    config: RuleConfig,
    version: str,
    file: str,
    run: str,
    trigger: TriggerData,
    now: datetime,
    *,
    steps: tuple[TraceStep, ...] = (),
) -> RunTrace:
    """A trace of the run ``run``, ``started``, with ``steps`` so far."""
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
