"""The audit sink service: AUDIT in, the append-only, hash-chained store out, as ``audit_sink``.

Settings (besides the runtime's ``RUBY_*``):

| variable | default | meaning |
|---|---|---|
| ``RUBY_AUDIT_DB`` | ``<RUBY_STATE_DIR>/audit/audit.db`` | the SQLite audit store |
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from nats.aio.client import Client

from ruby_audit_sink.sink import IDENTITY, AuditSink, log
from ruby_audit_sink.writer import MAX_BATCH
from ruby_natsx.apply import Action, apply_consumer
from ruby_natsx.audit import publish_records, secrets_read
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT, AUDIT_SINK, STATUS, topology
from ruby_runtime.settings import ServiceSettings
from ruby_runtime.startup import Started

SETTINGS: Final[Mapping[str, str]] = {
    "RUBY_AUDIT_DB": "the SQLite audit store (default <RUBY_STATE_DIR>/audit/audit.db)",
}
"""The audit sink's own variables (``--help`` lists them after the runtime's)."""


def audit_db(settings: ServiceSettings, environ: Mapping[str, str] | None = None) -> Path:
    """``RUBY_AUDIT_DB``, or ``<state dir>/audit/audit.db``; absolute."""
    env = os.environ if environ is None else environ
    raw = env.get("RUBY_AUDIT_DB", "").strip()
    path = Path(raw) if raw else settings.state_dir / "audit" / "audit.db"
    return path.resolve()


def build(nc: Client, subjects: Subjects, db: Path) -> tuple[AuditSink, Runner]:
    """The sink and the runner that feeds it AUDIT (as the service and the tests use them).

    The runner may run as many handlers as the consumer has messages in flight, so that a
    batch can hold everything delivered while the previous one commits.
    """
    topo = topology(subjects)
    sink = AuditSink(nc, db, status_bucket=topo.bucket(STATUS).bucket, subjects=subjects)
    config = RunnerConfig(
        service=IDENTITY,
        stream=topo.stream(AUDIT).name,
        consumer=AUDIT_SINK,
        concurrency=MAX_BATCH,
    )
    return sink, Runner(nc, subjects, config, sink.handle)


async def ensure_consumer(nc: Client, subjects: Subjects) -> None:
    """Create (or bring back to its declaration) the sink's own durable on AUDIT: the sink
    creates it, because the operator may not touch it (ADR-0005)."""
    change = await apply_consumer(nc.jetstream(), topology(subjects).consumer(AUDIT_SINK))
    if change.action is not Action.UNCHANGED:
        log.info("consumer applied", change=str(change))


async def run(sink: AuditSink, runner: Runner) -> None:
    """Open the store, consume until ``runner.stop()``, then close the store (in that order:
    handlers still waiting for a commit finish before the writer stops)."""
    await sink.start()
    try:
        await runner.run()
    finally:
        await sink.close()


async def serve(started: Started[Client]) -> int:
    """Run until SIGTERM or SIGINT; then stop pulling, commit what is in flight, exit 0."""
    subjects = Subjects(started.settings.prefix)
    await ensure_consumer(started.nats, subjects)
    sink, runner = build(started.nats, subjects, audit_db(started.settings))
    await publish_records(started.nats, secrets_read(subjects, IDENTITY, started.secrets_read))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    await run(sink, runner)
    return 0
