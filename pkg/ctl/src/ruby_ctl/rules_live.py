"""``rubyctl rules status | trace``: what the running engine says about its rules.

The engine writes, under its own keys of the status bucket (``ruby_engine.status``): ``engine``
(ready, counts, refused files), ``engine.rules`` (every rule and refused file), both contracts
of ``ruby_schemas.status``, and ``engine.trace.<rule>`` (its recent runs, oldest first:
`ruby_schemas.traces.TraceRecord`, the contract the engine writes). These commands read them as
the operator; they are tolerant of fields they do not know, so an older rubyctl reads a newer
engine.
Also the operator connection the NATS-reading rule commands share (`run_as_operator`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, BeforeValidator, ConfigDict

from ruby_ctl.operator import run_connected
from ruby_natsx.subjects import SubjectError, Subjects, check_token
from ruby_natsx.topology import STATUS, topology
from ruby_schemas.status import EngineRecord, RulesRecord, StatusRecordError, read_record
from ruby_schemas.traces import RunTrace, TraceRecord, TraceTrigger

STALE_AFTER = 30.0
"""Seconds after which the ``engine`` record is old news (the engine rewrites it every 5 s)."""
NO_STATUS = "no status from the engine: is it running?"

Verb = Callable[[argparse.Namespace, Client], Awaitable[int]]


def run_as_operator(args: argparse.Namespace, verb: Verb) -> int:
    """Connect (as the operator, or anonymously to ``--nats-url``), run ``verb``, drain."""

    async def body(nc: Client) -> int:
        return await verb(args, nc)

    return run_connected("rules", args.nats_url, body)


# --- the records, as the engine writes them ------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_M = TypeVar("_M", bound=BaseModel)

Moment = Annotated[datetime | None, BeforeValidator(lambda value: value or None)]
"""A time the engine may leave empty (``""``: a rule that never ran)."""


class UnreadableRecordError(ValueError):
    """A status record is not what the engine writes; the message names the key and fields."""


class EngineStatus:
    """The engine's keys of one installation's status bucket (read only)."""

    def __init__(self, kv: KeyValue | None) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, nc: Client, prefix: str) -> EngineStatus:
        bucket = topology(Subjects(prefix)).bucket(STATUS).bucket
        try:
            return cls(await nc.jetstream().key_value(bucket))
        except BucketNotFoundError:
            return cls(None)  # the topology was never applied: no engine ever ran

    async def raw(self, key: str) -> bytes | None:
        if self._kv is None:
            return None
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or None

    async def read(self, key: str, model: type[_M]) -> _M | None:
        raw = await self.raw(key)
        if raw is None:
            return None
        try:
            return read_record(model, raw, key=key)
        except StatusRecordError as exc:
            raise UnreadableRecordError(str(exc)) from None


def display_zone() -> tzinfo | None:
    """``RUBY_TIMEZONE`` if it names a zone, else ``None`` (the local zone)."""
    name = os.environ.get("RUBY_TIMEZONE")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _when(moment: datetime | None, tz: tzinfo | None) -> str:
    return "-" if moment is None else moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# --- status --------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    return run_as_operator(args, _status)


async def _status(args: argparse.Namespace, nc: Client) -> int:
    store = await EngineStatus.open(nc, args.prefix)
    try:
        engine = await store.read("engine", EngineRecord)
        rules = await store.read("engine.rules", RulesRecord)
    except UnreadableRecordError as exc:
        print(f"rubyctl rules status: {exc}", file=sys.stderr)
        return 1
    if engine is None and rules is None:
        print(NO_STATUS, file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    print(_engine_line(engine, now))
    if rules is None:
        print("the engine has not written its rules yet")
        return 1
    _print_table(rules, now)
    refused = dict(rules.refused_files)
    for name in engine.refused_files if engine is not None else ():
        refused.setdefault(name, ())
    if not refused:
        return 0
    print()
    print(f"refused files ({len(refused)}): not loaded; rules they held before keep running")
    for name, errors in sorted(refused.items()):
        print(f"  {name}")
        for error in errors:
            print(f"    {error}")
    return 1


def _engine_line(engine: EngineRecord | None, now: datetime) -> str:
    if engine is None:
        return "engine: no engine record (only its rules record)"
    state = "ready" if engine.ready else "not ready (starting, or stopped)"
    line = (
        f"engine: {state}; {engine.rules} rule(s), {engine.timers} timer(s); "
        f"status written {_age(engine.updated, now)}"
    )
    if (now - engine.updated).total_seconds() > STALE_AFTER:
        line += ": stale, is the engine still running?"
    return line


def _print_table(rules: RulesRecord, now: datetime) -> None:
    if not rules.rules:
        print("no rules loaded")
        return
    header = ("RULE", "FILE", "VERSION", "MODE", "RUNS", "FAILED", "LAST", "WHEN", "REASON")
    rows = [
        (
            rule_id,
            row.file,
            row.version[:8],
            row.mode,
            str(row.runs),
            str(row.failed),
            row.last_status or "-",
            _age(row.last_run, now) if row.last_status else "-",
            row.last_reason,
        )
        for rule_id, row in sorted(rules.rules.items())
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    numeric = {4, 5}
    for r in (header, *rows):
        cells = [
            r[i].rjust(widths[i]) if i in numeric else r[i].ljust(widths[i])
            for i in range(len(widths))
        ]
        print("  ".join([*cells, r[-1]]).rstrip())


# --- trace ---------------------------------------------------------------------------------


def trace(args: argparse.Namespace) -> int:
    try:
        check_token(args.rule, "rule id")
    except SubjectError as exc:
        print(f"rubyctl rules trace: {exc}", file=sys.stderr)
        return 2
    if args.last < 1:
        print("rubyctl rules trace: --last must be 1 or more", file=sys.stderr)
        return 2
    return run_as_operator(args, _trace)


async def _trace(args: argparse.Namespace, nc: Client) -> int:
    rule_id: str = args.rule
    store = await EngineStatus.open(nc, args.prefix)
    key = f"engine.trace.{rule_id}"
    try:
        record = await store.read(key, TraceRecord)
        rules = await store.read("engine.rules", RulesRecord)
        engine = await store.read("engine", EngineRecord)
    except UnreadableRecordError as exc:
        print(f"rubyctl rules trace: {exc}", file=sys.stderr)
        return 1
    if record is None or not record.runs:
        if rules is None and engine is None:
            print(NO_STATUS, file=sys.stderr)
            return 1
        if rules is not None and rule_id in rules.rules:
            print(f"{rule_id}: no runs recorded yet")
            return 0
        known = ", ".join(sorted(rules.rules)) if rules is not None else ""
        print(
            f"rubyctl rules trace: the engine has no rule {rule_id!r}"
            + (f"; its rules: {known}" if known else ""),
            file=sys.stderr,
        )
        return 1
    if args.json:
        raw = json.loads(await store.raw(key) or b"{}")
        for run in raw.get("runs", [])[-args.last :]:
            print(json.dumps(run, ensure_ascii=False))
        return 0
    runs = record.runs[-args.last :]
    tz = display_zone()
    print(f"{rule_id}: {len(runs)} of {len(record.runs)} recorded run(s), oldest first")
    for run in runs:
        _print_run(run, tz)
    return 0


def _print_run(run: RunTrace, tz: tzinfo | None) -> None:
    print()
    print(f"{_when(run.updated, tz)}  {run.status}{': ' + run.reason if run.reason else ''}")
    print(f"  run      {run.run_id} (version {run.version[:8]})")
    print(f"  trigger  {_trigger(run.trigger, tz)}")
    width = max((len(step.path) for step in run.steps), default=0)
    kinds = max((len(step.kind) for step in run.steps), default=0)
    for step in run.steps:
        sent = step.command_id or step.message_id
        line = f"  step     {step.path:<{width}}  {step.kind:<{kinds}}  {step.result}"
        print(f"{line}  {sent}" if sent else line)
    if run.command_ids:
        print(f"  commands {', '.join(run.command_ids)}")


def _trigger(t: TraceTrigger, tz: tzinfo | None) -> str:
    name = f"{t.id} ({t.kind})" if t.id and t.id != t.kind else t.kind
    at = "" if t.time is None else f" at {_when(t.time, tz)}"
    if t.entity_id is not None:
        return f"{name}: {t.entity_id} {t.from_ or 'none'} -> {t.to or 'none'}{at}"
    if t.event_type is not None:
        return f"{name}: event {t.event_type}{at}"
    return f"{name}{at}"
