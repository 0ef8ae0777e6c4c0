"""The durable timer records: what the engine stores in its timers bucket, and their JSON.

Three kinds, each under its own key prefix:

- ``for.<rule>.<trigger>.<entity>``: a ``for`` trigger waiting for its entity to hold a value;
- ``at.<rule>.<trigger>``: the next instant of a ``time`` or ``time_pattern`` trigger;
- ``run.<rule>.<run id>``: a run paused in ``delay`` or ``wait_for``, or queued behind another.

A run record carries its rule's whole definition, so a run finishes with the version it started
with even if the file changed, or the engine restarted, meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import JsonValue

from ruby_rules.context import TriggerData
from ruby_rules.model import Program, RuleConfig, rule_config_type
from ruby_schemas.ha_events import EntityState

Kind = Literal["for", "at", "run"]
RunStatus = Literal["waiting", "queued"]


class RecordError(ValueError):
    """A stored timer record cannot be read."""


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """One durable timer. ``deadline`` is aware UTC; ``None`` only for a queued run."""

    kind: Kind
    rule_id: str
    deadline: datetime | None
    trigger: TriggerData
    version: str
    """The rule version that armed it (``for``/``at``) or runs it (``run``)."""
    trigger_index: int = 0
    trigger_hash: str = ""
    """For ``for``/``at``: a hash of the trigger's config; a changed trigger drops the timer."""
    entity_id: str | None = None
    """For ``for``: the entity that must hold its value."""
    run_id: str | None = None
    """For ``run``: the run's id."""
    status: RunStatus = "waiting"
    """For ``run``: paused at ``resume_after`` (``waiting``) or not started (``queued``)."""
    resume_after: tuple[int, ...] | None = None
    """For a waiting run: the position of the ``delay``/``wait_for`` it is paused in."""
    wait: bool = False
    """For a waiting run: paused in ``wait_for`` (its trigger resumes it before the deadline)."""
    wait_until_time: bool = False
    """For a ``wait_for`` on a time trigger: the deadline is the trigger, not the timeout."""
    queued_seq: int = 0
    """For a queued run: its place in the queue."""
    rule: RuleConfig | None = None
    """For ``run``: the definition it runs with."""
    file: str = ""
    steps: tuple[dict[str, JsonValue], ...] = field(default=())
    """For ``run``: the trace so far, so a resumed run reports the whole run."""
    program: Program | None = field(default=None, compare=False, repr=False)
    """For ``run``: ``rule`` compiled; passed on from record to record as the run goes on."""

    @property
    def compiled(self) -> Program:
        """For ``run``: the processors of ``rule``, compiled at most once per record chain."""
        if self.program is None:
            if self.rule is None:
                raise RecordError(f"timer record {self.key} holds no rule")
            # A frozen dataclass caches its derived field this way, once.
            object.__setattr__(self, "program", Program.compile(self.rule))
        assert self.program is not None  # noqa: S101 - set just above
        return self.program

    @property
    def key(self) -> str:
        """Its key in the timers bucket."""
        if self.kind == "for":
            return f"for.{self.rule_id}.{self.trigger_index}.{self.entity_id}"
        if self.kind == "at":
            return f"at.{self.rule_id}.{self.trigger_index}"
        return f"run.{self.rule_id}.{self.run_id}"

    def to_json(self) -> bytes:
        """The record as stored."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "rule_id": self.rule_id,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "trigger": trigger_to_json(self.trigger),
            "version": self.version,
            "trigger_index": self.trigger_index,
            "trigger_hash": self.trigger_hash,
            "entity_id": self.entity_id,
            "run_id": self.run_id,
            "status": self.status,
            "resume_after": None if self.resume_after is None else list(self.resume_after),
            "wait": self.wait,
            "wait_until_time": self.wait_until_time,
            "queued_seq": self.queued_seq,
            "file": self.file,
            "steps": list(self.steps),
            "rule": None
            if self.rule is None
            else self.rule.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TimerRecord:
        """Read a stored record; `RecordError` if it is not one."""
        try:
            d = json.loads(raw)
            rule = None if d["rule"] is None else rule_config_type().model_validate(d["rule"])
            record = cls(
                kind=d["kind"],
                rule_id=d["rule_id"],
                deadline=None if d["deadline"] is None else datetime.fromisoformat(d["deadline"]),
                trigger=trigger_from_json(d["trigger"]),
                version=d["version"],
                trigger_index=int(d["trigger_index"]),
                trigger_hash=d["trigger_hash"],
                entity_id=d["entity_id"],
                run_id=d["run_id"],
                status=d["status"],
                resume_after=None if d["resume_after"] is None else tuple(d["resume_after"]),
                wait=bool(d["wait"]),
                wait_until_time=bool(d["wait_until_time"]),
                queued_seq=int(d["queued_seq"]),
                rule=rule,
                file=d["file"],
                steps=tuple(d["steps"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"unreadable timer record: {exc}") from None
        if record.kind not in ("for", "at", "run"):
            raise RecordError(f"unknown timer record kind {record.kind!r}")
        if record.kind == "run" and (record.rule is None or record.run_id is None):
            raise RecordError("a run record without its rule or run id")
        if record.deadline is None and not (record.kind == "run" and record.status == "queued"):
            raise RecordError(f"a {record.kind} record without a deadline")
        return record


def _state(state: EntityState | None) -> Any:
    return None if state is None else state.model_dump(mode="json")


def trigger_to_json(t: TriggerData) -> dict[str, Any]:
    """A trigger as JSON (see `trigger_from_json`)."""
    return {
        "kind": t.kind,
        "id": t.id,
        "event_id": t.event_id,
        "time": t.time.isoformat(),
        "entity_id": t.entity_id,
        "from_state": _state(t.from_state),
        "to_state": _state(t.to_state),
        "event_type": t.event_type,
        "event_data": dict(t.event_data),
        "correlation_id": t.correlation_id,
    }


def trigger_from_json(d: dict[str, Any]) -> TriggerData:
    """The trigger `trigger_to_json` wrote."""
    return TriggerData(
        kind=d["kind"],
        id=d["id"],
        event_id=d["event_id"],
        time=datetime.fromisoformat(d["time"]),
        entity_id=d["entity_id"],
        from_state=None if d["from_state"] is None else EntityState(**d["from_state"]),
        to_state=None if d["to_state"] is None else EntityState(**d["to_state"]),
        event_type=d["event_type"],
        event_data=d["event_data"],
        correlation_id=d["correlation_id"],
    )
