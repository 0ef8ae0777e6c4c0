"""Test helpers: the engine running in-process exactly as the service wires it (``build``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, tzinfo
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_engine.engine import Engine
from ruby_engine.service import build, run
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually


@contextlib.asynccontextmanager
async def running_engine(
    nc: Client, subjects: Subjects, rules_dir: Path, tz: tzinfo | None = None
) -> AsyncIterator[Engine]:
    """The engine, its runner, timers and rule watcher; ready on entry, stopped on exit."""
    engine, runner = await build(nc, subjects, rules_dir, tz)
    task = asyncio.create_task(run(engine, runner))
    try:
        await eventually(lambda: engine.status.ready or task.done(), message="engine ready")
        if task.done():
            task.result()  # raise what stopped it
        await runner.wait_started()
        yield engine
    finally:
        engine.stop()
        runner.stop()
        await asyncio.wait_for(task, 15)


class EngineProcess:
    """``python -m ruby_engine.main`` with ``env`` (an installation's settings), output to
    ``log``; stopped by its PID (SIGTERM), or killed with SIGKILL to test crash recovery."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ruby_engine.main", env=self.env, stdout=out, stderr=out
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


async def engine_ready(status: KeyValue, since: datetime | None = None) -> bool:
    """Whether the engine's status record (``engine`` in the status bucket) says ready, and
    was written after ``since`` (so a record left by a killed engine does not count)."""
    try:
        entry = await status.get("engine")
    except KeyNotFoundError:
        return False
    record = json.loads(entry.value or b"{}")
    fresh = since is None or datetime.fromisoformat(record["updated"]) > since
    return bool(record.get("ready")) and fresh
