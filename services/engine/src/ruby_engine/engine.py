"""The engine service's moving parts around `ruby_rules.engine.RuleEngine`.

- EVENTS arrive through the natsx runner; the handler stores the timer records a change arms
  or cancels, then returns the commands and events, which the runner publishes before acking
  (DESIGN.md promise 1). A redelivered event gives the same ids, so nothing runs twice.
- A timer task sleeps until the earliest deadline, fires what is due, publishes its messages
  (waiting for JetStream's acks) and only then updates the timers bucket: killed in between,
  the engine fires the same timer again on restart, with the same ids.
- A watcher (`ruby_engine.watch`) reloads rule files as they change (`ruby_rules.ruleset`):
  the last good version of a refused file keeps running, the refusal is logged, audited and
  shown in the status; files are read in a worker thread, applied on the event loop.
One lock serialises every call into the rule engine; nothing else shares its state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import structlog
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_engine.event_types import EventTypesRecord
from ruby_engine.outputs import outbound
from ruby_engine.status import Status
from ruby_engine.watch import watch
from ruby_natsx import tuning
from ruby_natsx.audit import audit_record
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.kvread import read_bucket
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_rules.engine import Effects, RuleEngine, TimerRecord, read_record
from ruby_rules.engine.core import TIMER_NOTES
from ruby_rules.engine.records import RecordError
from ruby_rules.files import shown_name
from ruby_rules.ruleset import Change, RuleSet
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.base import Payload
from ruby_schemas.commands import TriggerChange
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.ha_events import EntityState, EventFiredV1, HaLifecycleV1, StateChangedV1
from ruby_schemas.projection import ProjectionEntry
from ruby_schemas.rules import (
    RuleError,
    RuleLoadedV1,
    RuleRejectedV1,
    RuleUnloadedV1,
)
from ruby_schemas.webhooks import WebhookCalledV1

log = structlog.get_logger("ruby_engine")

IDENTITY = "engine"
RETRY_AFTER = 1.0
"""Seconds before firing a timer again whose messages could not be published."""
MAX_SLEEP = 30.0
"""The timer task wakes at least this often, so a wall-clock jump is noticed."""
LATE = timedelta(seconds=tuning.LATE_AFTER)


def entity_state(raw: bytes) -> EntityState:
    """A projection entry (`ProjectionEntry`, written by the gateway) as an entity state."""
    return ProjectionEntry.model_validate_json(raw).entity_state()


class Engine:
    """Rules, timers and status of one engine process. Start with `start`, end with `close`."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        rules_dir: Path,
        *,
        timers: KeyValue,
        projection: KeyValue,
        projection_bucket: str,
        timers_bucket: str,
        status_bucket: str,
        status: KeyValue | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self._nc, self._subjects = nc, subjects
        self._ruleset = RuleSet(rules_dir)
        self._core = RuleEngine(tz=tz)
        self._timers_kv, self._projection_kv = timers, projection
        self._projection_bucket, self._timers_bucket = projection_bucket, timers_bucket
        self._lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._publisher = Publisher(nc)
        self.event_types = EventTypesRecord(self._publisher, status_bucket)  # for the gateway
        self.status = Status(nc, f"$KV.{status_bucket}.{IDENTITY}", self._core, self._ruleset)
        self._status_kv = status

    @property
    def core(self) -> RuleEngine:
        """The rule engine (for tests and status)."""
        return self._core

    @property
    def ruleset(self) -> RuleSet:
        """The rule files loaded and refused (for tests and status)."""
        return self._ruleset

    # --- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        """Load states, stored timers and rules; publish what loading the rules decided."""
        await self._publisher.start()
        states: dict[str, EntityState] = {}
        for key, raw in (await read_bucket(self._nc, self._projection_bucket)).items():
            try:
                states[key] = entity_state(raw)
            except ValueError as exc:  # pydantic's ValidationError is one
                log.warning("unreadable projection entry skipped", key=key, error=str(exc))
        self._core.set_states(states)
        records: list[TimerRecord] = []
        for key, raw in (await read_bucket(self._nc, self._timers_bucket)).items():
            try:
                records.append(read_record(raw))
            except RecordError as exc:
                log.error("unreadable timer record deleted", key=key, error=str(exc))  # noqa: TRY400 - described; no traceback helps
                await self._timers_kv.delete(key)
        self._core.restore(records)
        log.info("engine state loaded", entities=len(states), timers=len(records))
        await self.reload(self._ruleset.names())
        if self._status_kv is not None:  # the runs recorded before a restart stay visible
            runs = await self.status.restore(self._status_kv, IDENTITY)
            log.info("recent runs restored", runs=runs)
        await self.status.start()
        log.info(
            "engine running",
            rules=len(self._ruleset.rules),
            refused_files=sorted(map(shown_name, self._ruleset.errors)),
            timers=len(self._core.timers),
        )

    def stop(self) -> None:
        """Ask the timer and watcher tasks to end."""
        self._stopping.set()
        self._wake.set()

    async def close(self) -> None:
        """Stop writing status; close the publisher."""
        await self.status.close()
        await self.event_types.close()
        await self._publisher.close()

    # --- events ----------------------------------------------------------------------------

    async def handle(self, envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        """The EVENTS handler: store timer changes, return the messages to publish."""
        payload = envelope.data
        late: dict[str, TriggerChange] = {}
        async with self._lock:
            now = datetime.now(UTC)
            if isinstance(payload, StateChangedV1):
                if payload.new_state is not None and now - envelope.time > LATE:
                    # A backlog's change: its commands let the gateway drop them if Home
                    # Assistant has changed the entity since (ADR-0031).
                    late[envelope.id] = TriggerChange(
                        entity_id=payload.entity_id, last_changed=payload.new_state.last_changed
                    )
                effects = self._core.on_state_changed(
                    event_id=envelope.id,
                    entity_id=payload.entity_id,
                    old=payload.old_state,
                    new=payload.new_state,
                    now=now,
                    correlation_id=envelope.correlation_id,
                    reconciled=payload.reconciled,
                )
            elif isinstance(payload, EventFiredV1):
                effects = self._core.on_event(
                    event_id=envelope.id,
                    event_type=payload.event_type,
                    data=payload.data,
                    fired_at=payload.time_fired,
                    now=now,
                    correlation_id=envelope.correlation_id,
                )
            elif isinstance(payload, HaLifecycleV1):  # `homeassistant` triggers (ADR-0032)
                effects = self._core.on_event(
                    event_id=envelope.id,
                    event_type=payload.event_type,
                    data={"event": payload.event},
                    fired_at=payload.at,
                    now=now,
                    correlation_id=envelope.correlation_id,
                )
            elif isinstance(payload, WebhookCalledV1):  # `webhook` triggers (ADR-0037)
                effects = self._core.on_event(
                    event_id=envelope.id,
                    event_type=payload.event_type,
                    data=payload.trigger_data(),
                    fired_at=payload.received,
                    now=now,
                    correlation_id=envelope.correlation_id,
                )
            else:  # nothing else is a trigger
                return ()
            await self._store(effects.timers)
            self._record(effects)
        return outbound(self._subjects, effects, now, late=late)

    # --- timers ----------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Fire timers as they fall due, until `stop`."""
        while not self._stopping.is_set():
            deadline = self._core.next_deadline()
            delay = MAX_SLEEP
            if deadline is not None:
                delay = min(MAX_SLEEP, max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if not self._stopping.is_set():
                await self.fire_due()

    async def fire_due(self) -> None:
        """Fire every due timer: publish its messages, then update the timers bucket."""
        async with self._lock:
            now = datetime.now(UTC)
            for key in self._core.due(now):
                record = self._core.timers.get(key)
                if record is None:
                    continue
                projection: dict[str, EntityState] | None = None
                try:
                    if record.kind == "for" and record.entity_id is not None:
                        projection = await self._projection(record.entity_id)
                    effects = self._core.fire(key, now, projection)
                    await self._publisher.publish(outbound(self._subjects, effects, now))
                    await self._store(effects.timers)
                except Exception as exc:  # publish or KV failed: fire it again shortly
                    log.warning("timer not fired, retrying", key=key, error=str(exc))
                    self._core.restore([record])
                    self._wake.set()
                    await asyncio.sleep(RETRY_AFTER)
                    continue
                self._record(effects)

    def _record(self, effects: Effects) -> None:
        """Keep the traces for the status, and log every run that did something."""
        self.status.record(effects.traces)
        for trace in effects.traces:
            if trace.status in TIMER_NOTES:
                log.debug("rule timer", rule=trace.rule_id, note=trace.reason)
            elif trace.status in ("not_run", "ignored"):
                log.debug("rule not run", rule=trace.rule_id, reason=trace.reason)
            elif trace.status == "failed":
                log.warning("rule failed", rule=trace.rule_id, reason=trace.reason)
            else:
                log.info(
                    "rule ran",
                    rule=trace.rule_id,
                    status=trace.status,
                    reason=trace.reason or None,
                    trigger_event_id=trace.trigger.event_id,
                    command_ids=list(trace.command_ids),
                )

    async def _projection(self, entity_id: str) -> dict[str, EntityState]:
        try:
            entry = await self._projection_kv.get(entity_id)
        except KeyNotFoundError:
            return {}
        if entry.value is None:
            return {}
        try:
            return {entity_id: entity_state(entry.value)}
        except ValueError as exc:  # unreadable: the entity is unknown, the re-check fails
            log.warning("unreadable projection entry", entity=entity_id, error=str(exc))
            return {}

    async def _store(self, timers: Mapping[str, TimerRecord | None]) -> None:
        for key, record in timers.items():
            if record is None:
                with contextlib.suppress(KeyNotFoundError):
                    await self._timers_kv.delete(key)
            else:
                await self._timers_kv.put(key, record.to_json())
        if timers:
            self._wake.set()

    # --- rule files ------------------------------------------------------------------------

    async def watch_rules(self, *, debounce_ms: int = 200) -> None:
        """Reload rule files as they are added, changed or deleted, until `stop`
        (`ruby_engine.watch`: no file, however named, ends the watch)."""
        await watch(
            self._ruleset.directory,
            self.reload,
            self._ruleset.names,
            self._stopping,
            debounce_ms=debounce_ms,
        )

    async def reload(self, names: Sequence[str]) -> list[Change]:
        """Reload the named rule files now.

        The files are read and validated in a worker thread (a hostile 128 KiB file takes
        seconds to parse; events keep flowing meanwhile), then applied on the event loop;
        one reload at a time, so the last save read is the last applied.
        """
        async with self._reload_lock:
            results = await asyncio.to_thread(lambda: [self._ruleset.read(n) for n in names])
            changes = [
                self._ruleset.apply(name, result)
                for name, result in zip(names, results, strict=True)
            ]
            return await self._apply_changes(changes)

    async def _apply_changes(self, changes: Sequence[Change]) -> list[Change]:
        async with self._lock:
            now = datetime.now(UTC)
            effects: Effects = self._core.set_rules(self._ruleset.rules, now)
            messages = [m for change in changes for m in self._announce(change, now)]
            try:
                await self._store(effects.timers)
                await self._publisher.publish(messages)
            except Exception as exc:  # NATS away: the rules run; set_rules repeats this at start
                log.error(  # noqa: TRY400 - the cause is in the message; no traceback helps
                    "rule changes applied, but not all stored or announced", error=str(exc)
                )
        self.status.touch_rules()
        await self.event_types.update(self._core)
        return list(changes)

    def _announce(self, change: Change, now: datetime) -> list[Outbound]:
        out: list[Outbound] = []

        def emit(rule_id: str, what: str, payload: Payload, outcome: AuditOutcome,
                 reason: str, action: str | None = None) -> None:  # fmt: skip
            envelope = make_envelope(payload, source="ruby/engine", time=now)
            out.append(Outbound(self._subjects.rule(rule_id, what), envelope))
            out.append(
                audit_record(
                    self._subjects,
                    service=IDENTITY,
                    action=action or f"rule.{what}",
                    target=f"rule:{rule_id}",
                    outcome=outcome,
                    reason=reason,
                    cause=envelope,
                    details=payload.model_dump(mode="json"),
                )
            )

        payload: Payload
        for rule in change.loaded:
            log.info("rule loaded", rule=rule.id, version=rule.version, file=rule.file)
            payload = RuleLoadedV1(rule_id=rule.id, rule_version=rule.version, file=rule.file)
            emit(rule.id, "loaded", payload, AuditOutcome.SUCCEEDED, "loaded")
        for before, after in change.changed:
            log.info("rule changed", rule=after.id, version=after.version, was=before.version)
            payload = RuleLoadedV1(
                rule_id=after.id,
                rule_version=after.version,
                file=after.file,
                replaced_version=before.version,
            )
            emit(
                after.id,
                "loaded",
                payload,
                AuditOutcome.SUCCEEDED,
                f"changed from version {before.version}",
                action="rule.changed",
            )
        for rule in change.unloaded:
            log.info("rule unloaded", rule=rule.id, version=rule.version, file=rule.file)
            payload = RuleUnloadedV1(
                rule_id=rule.id, rule_version=rule.version, file=rule.file, reason="removed"
            )
            emit(rule.id, "unloaded", payload, AuditOutcome.SUCCEEDED, "removed")
        if change.rejected:
            kept = ", ".join(rule.id for rule in change.kept) or "none"
            for error in change.rejected:
                log.error("rule file refused", error=str(error), kept_running=kept)
            rule_ids = {error.rule_id for error in change.rejected if error.rule_id}
            subject_rule = next(iter(sorted(rule_ids)), None) or "_file"
            kept_rule = next((r for r in change.kept if r.id == subject_rule), None)
            payload = RuleRejectedV1(
                file=change.file,
                rule_id=subject_rule if subject_rule != "_file" else None,
                kept_version=None if kept_rule is None else kept_rule.version,
                errors=tuple(
                    RuleError(file=e.file, line=e.line, column=e.column, message=e.message)
                    for e in change.rejected
                ),
            )
            reason = f"{len(change.rejected)} error(s); kept running: {kept}"
            emit(subject_rule, "rejected", payload, AuditOutcome.FAILED, reason)
        return out
