"""Test helpers: the sink in-process exactly as the service wires it (``build``), the sink as a
process (to ``kill -9`` it), and its readiness as its status record tells it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_audit_sink.service import build, run
from ruby_audit_sink.sink import IDENTITY, AuditSink
from ruby_natsx.status import status_ready
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import ServiceProcess, eventually
from ruby_schemas.status import AuditHeadRecord, AuditSinkRecord, read_record


@contextlib.asynccontextmanager
async def running_sink(nc: Client, subjects: Subjects, db_path: Path) -> AsyncIterator[AuditSink]:
    """The sink and its runner; ready (store open, pulling) on entry, stopped on exit."""
    sink, runner = build(nc, subjects, db_path)
    task = asyncio.create_task(run(sink, runner))
    try:
        await eventually(lambda: sink.status.ready or task.done(), message="audit sink ready")
        if task.done():
            task.result()  # raise what stopped it
        await runner.wait_started()
        yield sink
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


def sink_process(env: Mapping[str, str], log: Path) -> ServiceProcess:
    """The audit sink as its own process (``python -m ruby_audit_sink.main``) with ``env``."""
    return ServiceProcess("ruby_audit_sink.main", env, log)


async def sink_ready(status: KeyValue, since: datetime | None = None) -> bool:
    """Whether the audit sink's status record says ready, written after ``since``."""
    return await status_ready(status, IDENTITY, since)


async def sink_record(status: KeyValue) -> AuditSinkRecord | None:
    """The sink's status record (``audit_sink``) as a reader validates it; None before its
    first."""
    try:
        entry = await status.get(IDENTITY)
    except KeyNotFoundError:
        return None
    return read_record(AuditSinkRecord, entry.value or b"", key=IDENTITY)


async def published_head(status: KeyValue) -> tuple[int, str] | None:
    """The head the sink published last (``audit_sink.head``) as ``(seq, hash)``; None before
    its first.

    The sink publishes it after a commit, with a core publish that the status bucket stores a
    moment later: rows seen in the store say nothing about the head yet. Poll this with
    ``eventually`` until it shows the head expected.
    """
    key = f"{IDENTITY}.head"
    try:
        entry = await status.get(key)
    except KeyNotFoundError:
        return None
    record = read_record(AuditHeadRecord, entry.value or b"", key=key)
    return record.seq, record.hash
