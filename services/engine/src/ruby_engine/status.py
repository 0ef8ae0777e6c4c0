"""What the engine shows about itself: its status record, each rule's state and recent runs.

Records go to the status bucket under the engine's own keys (the only ones it may write):

- ``engine``: ready, counts, refused files (rewritten every few seconds), an `EngineRecord`;
- ``engine.rules``: every rule (file, version, runs, failures, last run) and every refused
  file's errors: what ``rubyctl rules status`` shows, a `RulesRecord` (both contracts are in
  ``ruby_schemas.status``, shared with the readers);
- ``engine.trace.<rule id>``: the rule's most recent runs, newest last: ``rubyctl rules trace``.

Traces are kept in memory and written at most once per interval per rule, so a busy rule costs
one write per interval, not one per run.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from ruby_rules.engine import RuleEngine
from ruby_rules.engine.core import TIMER_NOTES
from ruby_rules.files import shown_name
from ruby_rules.ruleset import RuleSet
from ruby_schemas.status import (
    EngineRecord,
    RuleRow,
    RulesRecord,
    StatusRecordError,
    read_record,
)
from ruby_schemas.traces import RunTrace

TRACES_KEPT = 20
"""Runs kept per rule."""
FLUSH_INTERVAL = 0.5
"""Seconds between writes of changed traces and the rules record."""
RULES_INTERVAL = 5.0
"""Seconds between rewrites of the rules record for new runs: it holds every rule (about
200 KiB for 1,000), so rewriting it at each flush cost the engine 7 ms and the server a
200 KiB KV write twice a second while rules ran. A changed rule set is written at once."""
STATUS_INTERVAL = 5.0
"""Seconds between rewrites of the ``engine`` record even when nothing changed."""


@dataclass
class _Counts:
    runs: int = 0
    failed: int = 0
    last_status: str = ""
    last_reason: str = ""
    last_run: str = ""


class _Kept:
    """A run kept for its rule's trace record. Runs are frozen: its JSON is made once, at the
    first flush after it, and from then on only the JSON is kept (a third of the model's
    memory; 1,000 busy rules keep 20,000 runs)."""

    __slots__ = ("_text", "_trace", "run_id")

    def __init__(self, trace: RunTrace | None, *, run_id: str = "", text: str | None = None):
        self.run_id = trace.run_id if trace is not None else run_id
        self._trace = trace
        self._text = text

    @classmethod
    def stored(cls, run: Any) -> _Kept | None:
        """A run as a previous process stored it (JSON-decoded), kept as that JSON; None if it
        does not read as a run (history: dropped)."""
        try:
            trace = RunTrace.model_validate(run)
        except ValidationError:
            return None
        return cls(None, run_id=trace.run_id, text=json.dumps(run))

    @property
    def trace(self) -> RunTrace:
        if self._trace is not None:
            return self._trace
        return RunTrace.model_validate_json(self.text())

    def text(self) -> str:
        if self._text is None:
            assert self._trace is not None  # noqa: S101  # one of the two is always kept
            self._text = json.dumps(self._trace.model_dump(mode="json", by_alias=True))
            self._trace = None
        return self._text


class Status:
    """Collects traces; writes the status records until `close`. One event loop."""

    def __init__(self, nc: Client, subject: str, core: RuleEngine, ruleset: RuleSet) -> None:
        self._nc, self._subject = nc, subject
        self._core, self._ruleset = core, ruleset
        self._traces: dict[str, deque[_Kept]] = {}
        self._counts: dict[str, _Counts] = {}
        self._dirty: set[str] = set()
        self._rules_dirty = True
        self._counts_dirty = False
        self.ready = False
        self._task: asyncio.Task[None] | None = None

    def record(self, traces: Iterable[RunTrace]) -> None:
        """Remember runs (a paused run's trace replaces its earlier one)."""
        for trace in traces:
            rule_id = trace.rule_id
            kept = self._traces.setdefault(rule_id, deque(maxlen=TRACES_KEPT))
            for i, old in enumerate(kept):
                if trace.run_id and old.run_id == trace.run_id:
                    del kept[i]
                    break
            kept.append(_Kept(trace))
            counts = self._counts.setdefault(rule_id, _Counts())
            if trace.status in TIMER_NOTES:  # a `for` armed or cancelled: not a run
                self._dirty.add(rule_id)
                continue
            if trace.status not in ("waiting", "queued"):
                counts.runs += 1
            counts.failed += trace.status == "failed"
            counts.last_status, counts.last_reason = trace.status, trace.reason
            counts.last_run = trace.updated.isoformat()
            self._dirty.add(rule_id)

    async def restore(self, kv: KeyValue, prefix: str) -> int:
        """Take back the counts and recent runs a previous process wrote under ``prefix``
        (``engine``) in the status bucket ``kv``; return how many runs. Unreadable records
        are ignored: they are only history."""
        restored = 0
        for rule_id, row in (await _rule_rows(kv, f"{prefix}.rules")).items():
            last_run = "" if row.last_run is None else row.last_run.isoformat()
            self._counts[rule_id] = _Counts(
                row.runs, row.failed, row.last_status, row.last_reason, last_run
            )
        # One request per rule, all in flight at once: not a round trip after another.
        ids = [rule.id for rule in self._ruleset.rules]
        records = await asyncio.gather(*(_read(kv, f"{prefix}.trace.{i}") for i in ids))
        for rule_id, record in zip(ids, records, strict=True):
            runs = record.get("runs") if isinstance(record, dict) else None
            if isinstance(runs, list):
                readable = (k for k in map(_Kept.stored, runs) if k is not None)
                kept = deque(readable, maxlen=TRACES_KEPT)
                self._traces[rule_id] = kept
                restored += len(kept)
        return restored

    def traces(self, rule_id: str) -> list[RunTrace]:
        """The recent runs of one rule, oldest first."""
        return [kept.trace for kept in self._traces.get(rule_id, ())]

    def touch_rules(self) -> None:
        """The rule set changed: rewrite the rules record."""
        self._rules_dirty = True

    async def start(self) -> None:
        """Mark ready and start writing."""
        self.ready = True
        await self._write_engine()
        self._task = asyncio.create_task(self._run(), name="engine-status")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.ready = False
        if self._nc.is_connected:
            await self.flush()
            await self._write_engine()
            await self._nc.flush()

    async def flush(self, *, counts: bool = True) -> None:
        """Write the changed traces; the rules record if the rule set changed, or if runs
        changed its counts and ``counts`` (the periodic writer passes it every
        `RULES_INTERVAL`: the record holds every rule, too big to rewrite at each flush)."""
        dirty, self._dirty = self._dirty, set()
        for rule_id in sorted(dirty):
            await self._nc.publish(f"{self._subject}.trace.{rule_id}", self.trace_record(rule_id))
        self._counts_dirty |= bool(dirty)
        if self._rules_dirty or (counts and self._counts_dirty):
            self._rules_dirty = self._counts_dirty = False
            await self._write("rules", self.rules_record())

    def trace_record(self, rule_id: str) -> bytes:
        """The ``engine.trace.<rule id>`` record: a `TraceRecord` as ``json.dumps`` writes its
        ``model_dump(mode="json", by_alias=True)``, from each run's JSON made once (a busy
        rule's 20 runs were dumped again at every flush: 13 % of a firing engine's CPU)."""
        runs = ", ".join(kept.text() for kept in self._traces.get(rule_id, ()))
        return f'{{"rule_id": {json.dumps(rule_id)}, "runs": [{runs}]}}'.encode()

    def rules_record(self) -> RulesRecord:
        """Every rule and every refused file, as ``rubyctl rules status`` shows them."""
        rules: dict[str, RuleRow] = {}
        for rule in self._ruleset.rules:
            counts = self._counts.get(rule.id, _Counts())
            rules[rule.id] = RuleRow(
                file=rule.file,
                where=rule.where,
                version=rule.version,
                mode=rule.config.mode,
                runs=counts.runs,
                failed=counts.failed,
                last_status=counts.last_status,
                last_reason=counts.last_reason,
                last_run=datetime.fromisoformat(counts.last_run) if counts.last_run else None,
            )
        errors = {
            shown_name(name): tuple(str(error) for error in errors)
            for name, errors in self._ruleset.errors.items()
        }
        return RulesRecord(updated=datetime.now(UTC), rules=rules, refused_files=errors)

    def engine_record(self) -> EngineRecord:
        """The ``engine`` record as it would be written now."""
        return EngineRecord(
            ready=self.ready,
            updated=datetime.now(UTC),
            rules=len(self._ruleset.rules),
            timers=len(self._core.timers),
            refused_files=tuple(sorted(map(shown_name, self._ruleset.errors))),
        )

    async def _run(self) -> None:
        since_status = since_rules = 0.0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            if self._nc.is_connected:
                since_rules += FLUSH_INTERVAL
                counts = since_rules >= RULES_INTERVAL
                await self.flush(counts=counts)
                since_rules = 0.0 if counts else since_rules
                since_status += FLUSH_INTERVAL
                if since_status >= STATUS_INTERVAL:
                    since_status = 0.0
                    await self._write_engine()

    async def _write_engine(self) -> None:
        if not self._nc.is_connected:
            return
        await self._nc.publish(self._subject, self.engine_record().model_dump_json().encode())

    async def _write(self, key: str, record: BaseModel) -> None:
        await self._nc.publish(f"{self._subject}.{key}", record.model_dump_json().encode())


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value or None


async def _rule_rows(kv: KeyValue, key: str) -> dict[str, RuleRow]:
    """The rows of the rules record ``key``; none if it is missing or unreadable."""
    raw = await _get(kv, key)
    if raw is None:
        return {}
    try:
        return read_record(RulesRecord, raw, key=key).rules
    except StatusRecordError:
        return {}


async def _read(kv: KeyValue, key: str) -> Any:
    try:
        return json.loads(await _get(kv, key) or b"null")
    except ValueError:
        return None
