"""Health: ``/healthz`` (the process is alive) and ``/readyz`` (HA and NATS connected, the
projection loaded) on a local port, and a status record in the status bucket.

The record (key ``gateway``) is a `GatewayRecord` and the body of ``/readyz`` a
`GatewayReadiness`, both contracts of ``ruby_schemas.status`` shared with their readers.

The HTTP server binds 127.0.0.1 only; Traefik's edge auth fronts everything else (issue 8).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from aiohttp import web
from nats.aio.client import Client

from ruby_gateway.bridge import BridgeStatus
from ruby_schemas.status import GatewayReadiness, GatewayRecord, ReadinessChecks

STATUS_INTERVAL = 5.0
"""How often the status record is rewritten."""


def readiness(status: BridgeStatus, nc: Client) -> GatewayReadiness:
    """What /readyz answers: each check by name, and whether all pass."""
    checks = ReadinessChecks(
        home_assistant=status.connected,
        nats=nc.is_connected,
        projection=status.projection_loaded,
    )
    return GatewayReadiness(
        ready=checks.home_assistant and checks.nats and checks.projection, checks=checks
    )


def status_record(status: BridgeStatus, *, stopped: bool = False) -> GatewayRecord:
    """The ``gateway`` record of ``status`` now: ready when connected to Home Assistant with
    the projection loaded (NATS is up: the record is being written), never once ``stopped``."""
    ready = status.connected and status.projection_loaded and not stopped
    return GatewayRecord.model_validate(
        {**asdict(status), "ready": ready, "updated": datetime.now(UTC)}
    )


class Health:
    """Serves the endpoints and writes the status record until ``close``."""

    def __init__(
        self,
        status: Callable[[], BridgeStatus],
        nc: Client,
        *,
        status_subject: str,
        port: int,
        host: str = "127.0.0.1",
    ) -> None:
        self._status = status
        self._nc = nc
        self._status_subject = status_subject
        self._host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        if self.port == 0:  # a free port was asked for: report the one bound
            self.port = int(self._runner.addresses[0][1])
        self._writer = asyncio.create_task(self._write_status(), name="status-writer")

    async def close(self) -> None:
        """Stop serving; write the record a last time, not ready."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            if self._nc.is_connected:
                with contextlib.suppress(Exception):  # the connection may be going: best effort
                    await self._publish(status_record(self._status(), stopped=True))
                    await self._nc.flush(timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        body = readiness(self._status(), self._nc)
        return web.Response(
            text=body.model_dump_json(),
            content_type="application/json",
            status=200 if body.ready else 503,
        )

    async def _write_status(self) -> None:
        while True:
            if self._nc.is_connected:
                await self._publish(status_record(self._status()))
            await asyncio.sleep(STATUS_INTERVAL)

    async def _publish(self, record: GatewayRecord) -> None:
        await self._nc.publish(self._status_subject, record.model_dump_json().encode())
