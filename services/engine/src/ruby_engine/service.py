"""The engine service: rules from a directory, EVENTS in, commands out, under one identity.

Settings (besides the runtime's ``RUBY_*``):

| variable | default | meaning |
|---|---|---|
| ``RUBY_RULES_DIR`` | ``rules`` | the directory of ``*.yaml`` rule files (watched for changes) |
| ``RUBY_TIMEZONE`` | the system's | IANA time zone for time triggers and conditions |
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nats.aio.client import Client

from ruby_engine.engine import IDENTITY, Engine
from ruby_natsx.audit import publish_records, secrets_read
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import ENGINE, EVENTS, PROJECTION, STATUS, TIMERS, topology
from ruby_runtime.errors import SettingsError
from ruby_runtime.logging import get_logger
from ruby_runtime.startup import Started

log = get_logger("ruby_engine.service")

SETTINGS: Final[Mapping[str, str]] = {
    "RUBY_RULES_DIR": "the directory of *.yaml rule files, watched for changes (default rules)",
    "RUBY_TIMEZONE": "IANA time zone of time triggers and conditions (default the system's)",
}
"""The engine's own variables (``--help`` lists them after the runtime's)."""


def rules_dir() -> Path:
    """``RUBY_RULES_DIR``, which must be a directory."""
    path = Path(os.environ.get("RUBY_RULES_DIR", "rules")).resolve()
    if not path.is_dir():
        raise SettingsError(f"RUBY_RULES_DIR: {str(path)!r} is not a directory of rule files")
    return path


def timezone() -> tzinfo | None:
    """``RUBY_TIMEZONE`` as a zone, or ``None`` for the system's local time."""
    name = os.environ.get("RUBY_TIMEZONE")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"RUBY_TIMEZONE: unknown time zone {name!r} (expected an IANA name such as "
            "'Europe/Paris')"
        ) from None


async def build(
    nc: Client, subjects: Subjects, directory: Path, tz: tzinfo | None = None
) -> tuple[Engine, Runner]:
    """The engine and the runner that feeds it EVENTS (as the service and the tests use them)."""
    topo = topology(subjects)
    js = nc.jetstream()
    buckets = {name: topo.bucket(name).bucket for name in (TIMERS, PROJECTION, STATUS)}
    engine = Engine(
        nc,
        subjects,
        directory,
        timers=await js.key_value(buckets[TIMERS]),
        projection=await js.key_value(buckets[PROJECTION]),
        projection_bucket=buckets[PROJECTION],
        timers_bucket=buckets[TIMERS],
        status_bucket=buckets[STATUS],
        status=await js.key_value(buckets[STATUS]),
        tz=tz,
    )
    runner = Runner(
        nc,
        subjects,
        RunnerConfig(service=IDENTITY, stream=topo.stream(EVENTS).name, consumer=ENGINE),
        engine.handle,
    )
    return engine, runner


async def run(engine: Engine, runner: Runner) -> None:
    """Start the engine and run it until both ``engine.stop()`` and ``runner.stop()``."""
    await engine.start()
    try:
        await asyncio.gather(runner.run(), engine.run_timers(), engine.watch_rules())
    finally:
        await engine.close()


async def serve(started: Started[Client]) -> int:
    """Run until SIGTERM or SIGINT; then stop pulling, finish in-flight work, exit 0."""
    directory = rules_dir()
    subjects = Subjects(started.settings.prefix)
    engine, runner = await build(started.nats, subjects, directory, timezone())
    await publish_records(started.nats, secrets_read(subjects, IDENTITY, started.secrets_read))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        engine.stop()
        runner.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("engine starting", rules_dir=str(directory))
    await run(engine, runner)
    log.info("engine stopped")
    return 0
