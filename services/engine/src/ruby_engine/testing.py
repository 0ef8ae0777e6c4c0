"""Test helpers: the engine running in-process exactly as the service wires it (``build``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, tzinfo
from pathlib import Path

from nats.aio.client import Client
from nats.js.kv import KeyValue

from ruby_engine.engine import IDENTITY, Engine
from ruby_engine.service import build, run
from ruby_natsx.status import status_ready
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import ServiceProcess, eventually


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


def engine_process(env: Mapping[str, str], log: Path) -> ServiceProcess:
    """The engine as its own process (``python -m ruby_engine.main``) with ``env``."""
    return ServiceProcess("ruby_engine.main", env, log)


async def engine_ready(status: KeyValue, since: datetime | None = None) -> bool:
    """Whether the engine's status record says ready, written after ``since``."""
    return await status_ready(status, IDENTITY, since)
