"""The durable timer records the engine holds, and their stored form (`ruby_schemas.timers`).

One variant per kind, each under its own key prefix:

- `ForTimer`, ``for.<rule>.<trigger>.<entity>``: a ``for`` trigger waiting for its entity to
  hold a value;
- `AtTimer`, ``at.<rule>.<trigger>``: the next instant of a timed trigger;
- `WaitingRun` / `QueuedRun` (together `RunTimer`), ``run.<rule>.<run id>``: a run paused in
  ``delay`` or ``wait_for``, or queued behind another (no deadline).

A run record carries its rule's whole definition, compiled once when the record is made or
read back (and handed on to the records that follow it), so a run finishes with the version it
started with even if the file changed, or the engine restarted, meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

from pydantic import ValidationError

from ruby_rules.context import TriggerData
from ruby_rules.model import Program, RuleConfig, rule_config_type
from ruby_schemas import timers as stored
from ruby_schemas.primitives import JsonObject
from ruby_schemas.traces import TraceStep


class RecordError(ValueError):
    """A stored timer record cannot be read."""


@dataclass(frozen=True, slots=True)
class ForTimer:
    """A ``for`` trigger armed on ``entity_id``; fires at ``deadline`` if the value held."""

    kind: Literal["for"] = field(default="for", init=False)
    rule_id: str
    deadline: datetime
    trigger: TriggerData
    """The change that armed it: its message id makes the run's ids."""
    version: str
    trigger_index: int
    trigger_hash: str
    """A hash of the trigger's config: a changed trigger drops the timer."""
    entity_id: str
    file: str = ""

    @property
    def key(self) -> str:
        """Its key in the timers bucket."""
        return f"for.{self.rule_id}.{self.trigger_index}.{self.entity_id}"

    def to_json(self) -> bytes:
        """The record as stored."""
        return stored.timer_json(
            stored.ForTimer(kind="for", rule_id=self.rule_id, version=self.version,
                            trigger=fired(self.trigger), file=self.file, deadline=self.deadline,
                            trigger_index=self.trigger_index, trigger_hash=self.trigger_hash,
                            entity_id=self.entity_id)
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AtTimer:
    """The next instant of a timed trigger."""

    kind: Literal["at"] = field(default="at", init=False)
    rule_id: str
    deadline: datetime
    trigger: TriggerData
    """A placeholder naming the instant (``at.<rule>.<trigger>.<instant>``)."""
    version: str
    trigger_index: int
    trigger_hash: str
    """A hash of the trigger's config: a changed trigger drops the timer."""
    file: str = ""

    @property
    def key(self) -> str:
        """Its key in the timers bucket."""
        return f"at.{self.rule_id}.{self.trigger_index}"

    def to_json(self) -> bytes:
        """The record as stored."""
        return stored.timer_json(
            stored.AtTimer(kind="at", rule_id=self.rule_id, version=self.version,
                           trigger=fired(self.trigger), file=self.file, deadline=self.deadline,
                           trigger_index=self.trigger_index, trigger_hash=self.trigger_hash)
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """What every run record holds: the run, its trigger and the definition it runs with."""

    kind: Literal["run"] = field(default="run", init=False)
    rule_id: str
    trigger: TriggerData
    version: str
    run_id: str
    rule: RuleConfig
    file: str = ""
    steps: tuple[TraceStep, ...] = ()
    """The trace so far, so a resumed run reports the whole run."""
    program: Program | None = field(default=None, compare=False, repr=False)
    """``rule`` compiled; passed on from record to record as the run goes on."""
    variables: tuple[JsonObject, ...] = ()
    """The run's variables: paused, one scope per sequence along its position; queued, the
    rule's variables rendered when it was triggered (`ruby_rules.variables`)."""

    @property
    def key(self) -> str:
        """Its key in the timers bucket."""
        return f"run.{self.rule_id}.{self.run_id}"

    @property
    def compiled(self) -> Program:
        """The processors of ``rule``, compiled at most once per chain of records."""
        if self.program is None:
            # A frozen dataclass caches its derived field this way, once.
            object.__setattr__(self, "program", Program.compile(self.rule))
        assert self.program is not None  # noqa: S101 - set just above
        return self.program

    def _stored(self) -> dict[str, object]:
        rule = self.rule.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {"kind": "run", "rule_id": self.rule_id, "version": self.version,
                "trigger": fired(self.trigger), "file": self.file, "run_id": self.run_id,
                "rule": rule, "steps": self.steps,
                "variables": self.variables or None}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingRun(_Run):
    """A run paused at ``resume_after`` until ``deadline``."""

    status: Literal["waiting"] = field(default="waiting", init=False)
    deadline: datetime
    resume_after: tuple[int, ...]
    """The position of the ``delay``/``wait_for`` it is paused in."""
    wait: bool = False
    """Paused in a wait whose trigger may resume it before the deadline."""
    wait_until_time: bool = False
    """For a wait on a time trigger: the deadline is the trigger, not the timeout."""
    loops: JsonObject = field(default_factory=dict)
    """What the repeats around ``resume_after`` need to go on, by position."""

    def to_json(self) -> bytes:
        """The record as stored."""
        return stored.timer_json(
            stored.WaitingRun.model_validate(
                {**self._stored(), "status": "waiting", "deadline": self.deadline,
                 "resume_after": self.resume_after, "wait": self.wait,
                 "wait_until_time": self.wait_until_time, "loops": self.loops or None}
            )
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedRun(_Run):
    """A run not started yet: it waits for the rule's run in flight to end."""

    status: Literal["queued"] = field(default="queued", init=False)
    deadline: None = field(default=None, init=False)
    """None: a queued run has no deadline."""
    queued_seq: int
    """Its place in the queue."""

    def to_json(self) -> bytes:
        """The record as stored."""
        return stored.timer_json(
            stored.QueuedRun.model_validate(
                {**self._stored(), "status": "queued", "queued_seq": self.queued_seq}
            )
        )


RunTimer: TypeAlias = WaitingRun | QueuedRun
"""A run's record, paused (``status`` ``waiting``) or queued (``queued``)."""


TimerRecord: TypeAlias = ForTimer | AtTimer | RunTimer
"""Any durable timer; ``kind`` tells which."""


def read_record(raw: bytes) -> TimerRecord:
    """A stored record (today's form or the single record of old); `RecordError` if it is not
    one, or if a run's rule no longer validates. A run's rule is compiled here, once."""
    try:
        record = stored.read_timer(raw)
        if record.kind == "for":
            return ForTimer(record.rule_id, record.deadline, trigger_data(record.trigger),
                            record.version, record.trigger_index, record.trigger_hash,
                            record.entity_id, record.file)  # fmt: skip
        if record.kind == "at":
            return AtTimer(record.rule_id, record.deadline, trigger_data(record.trigger),
                           record.version, record.trigger_index, record.trigger_hash,
                           record.file)  # fmt: skip
        rule = rule_config_type().model_validate(record.rule)
    except (stored.TimerRecordError, ValidationError) as exc:
        raise RecordError(str(exc).splitlines()[0]) from None
    trigger, program = trigger_data(record.trigger), Program.compile(rule)
    variables = record.variables or ()
    if record.status == "queued":
        return QueuedRun(rule_id=record.rule_id, trigger=trigger, version=record.version,
                         run_id=record.run_id, rule=rule, file=record.file, steps=record.steps,
                         program=program, variables=variables,
                         queued_seq=record.queued_seq)  # fmt: skip
    return WaitingRun(rule_id=record.rule_id, trigger=trigger, version=record.version,
                      run_id=record.run_id, rule=rule, file=record.file, steps=record.steps,
                      program=program, variables=variables, deadline=record.deadline,
                      resume_after=record.resume_after, wait=record.wait,
                      wait_until_time=record.wait_until_time,
                      loops=record.loops or {})  # fmt: skip


def fired(t: TriggerData) -> stored.FiredTrigger:
    """A trigger as a record stores it (see `trigger_data`)."""
    return stored.FiredTrigger(
        kind=t.kind,
        id=t.id,
        event_id=t.event_id,
        time=t.time,
        entity_id=t.entity_id,
        from_state=t.from_state,
        to_state=t.to_state,
        event_type=t.event_type,
        event_data=dict(t.event_data),
        correlation_id=t.correlation_id,
    )


def trigger_data(t: stored.FiredTrigger) -> TriggerData:
    """The trigger `fired` stored."""
    return TriggerData(
        kind=t.kind,
        id=t.id,
        event_id=t.event_id,
        time=t.time,
        entity_id=t.entity_id,
        from_state=t.from_state,
        to_state=t.to_state,
        event_type=t.event_type,
        event_data=dict(t.event_data),
        correlation_id=t.correlation_id,
    )
