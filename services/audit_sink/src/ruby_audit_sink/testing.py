"""Test helpers: the sink in-process exactly as the service wires it (``build``), the sink as a
process (to ``kill -9`` it), and its readiness as its status record tells it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_audit_sink.service import build, run
from ruby_audit_sink.sink import IDENTITY, AuditSink
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually


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


class SinkProcess:
    """``python -m ruby_audit_sink.main`` with ``env`` (an installation's settings and
    ``RUBY_AUDIT_DB``), output to ``log``; stopped by its PID (SIGTERM), or killed with SIGKILL
    to test crash recovery."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ruby_audit_sink.main", env=self.env, stdout=out, stderr=out
            )

    async def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)

    def events(self) -> list[str]:
        """The ``event`` of every JSON log line written so far."""
        return [
            json.loads(line)["event"]
            for line in self.log.read_text().splitlines()
            if line.startswith("{")
        ]


async def sink_ready(status: KeyValue, since: datetime | None = None) -> bool:
    """Whether the sink's status record (``audit_sink`` in the status bucket) says ready, and
    was written after ``since`` (so a record left by a killed sink does not count)."""
    try:
        entry = await status.get(IDENTITY)
    except KeyNotFoundError:
        return False
    record = json.loads(entry.value or b"{}")
    fresh = since is None or datetime.fromisoformat(record["updated"]) > since
    return bool(record.get("ready")) and fresh
