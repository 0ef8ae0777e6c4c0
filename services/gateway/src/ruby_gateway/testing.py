"""Test helpers: the gateway's parts running as the service runs them (``wire``).

Used by the simulator tests and the real Home Assistant suite alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nats.aio.client import Client

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_gateway.projection import Projection
from ruby_gateway.wiring import wire
from ruby_natsx.runner import Runner
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import ServiceProcess, eventually
from ruby_natsx.topology import IDEMPOTENCY, topology
from ruby_schemas.commands import TriggerChange


@dataclass(frozen=True)
class Gateway:
    bridge: Bridge
    runner: Runner


ChangedTwice = Callable[["Gateway"], Awaitable[tuple[TriggerChange, TriggerChange]]]
"""The gateway tests' ``changed_twice`` fixture: an entity changed, then changed again, both
as a run's ``late_trigger`` (the first superseded by the second), once the gateway saw both."""


@contextlib.asynccontextmanager
async def running_gateway(
    nc: Client,
    subjects: Subjects,
    config: BridgeConfig,
    *,
    owner: str,
    backoff: tuple[float, ...],
    projection: Projection | None = None,
) -> AsyncIterator[Gateway]:
    """The bridge and the command runner, connected to HA; both stopped on exit.
    ``projection``: what the service would have loaded from its bucket (default: none)."""
    ledger = await nc.jetstream().key_value(topology(subjects).bucket(IDEMPOTENCY).bucket)
    bridge, runner = wire(
        nc, subjects, config, ledger, owner=owner, backoff=backoff, projection=projection
    )
    tasks = (asyncio.create_task(bridge.run()), asyncio.create_task(runner.run()))
    try:
        await eventually(lambda: bridge.status.connected, message="gateway connected to HA")
        yield Gateway(bridge, runner)
    finally:
        bridge.stop()
        runner.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


class Installation(Protocol):
    """What `running_secure_gateway` needs of ``ruby_ctl.testing.Installation``."""

    @property
    def subjects(self) -> Subjects: ...

    async def connect(self, identity: str, name: str | None = None) -> Client: ...


@contextlib.asynccontextmanager
async def running_secure_gateway(
    installation: Installation, config: BridgeConfig, *, backoff: tuple[float, ...]
) -> AsyncIterator[Gateway]:
    """`running_gateway` as the installation's gateway identity (TLS, NKEY, its permissions)
    on its own connection, drained on exit."""
    nc = await installation.connect("gateway")
    try:
        async with running_gateway(
            nc, installation.subjects, config, owner="gateway-test", backoff=backoff
        ) as gateway:
            yield gateway
    finally:
        await nc.drain()


def gateway_process(env: Mapping[str, str], log: Path) -> ServiceProcess:
    """The gateway as its own process (``python -m ruby_gateway.main``) with ``env``."""
    return ServiceProcess("ruby_gateway.main", env, log)


def successive_gateways(
    environ: Mapping[str, str], ha_url: str, logs: Path
) -> tuple[ServiceProcess, ServiceProcess]:
    """Two gateway processes of one installation (``environ``) against ``ha_url``, not started:
    the first to be killed mid-command, the second to take over (logs ``first.log`` and
    ``second.log`` in ``logs``)."""
    env = {**os.environ, **environ, "RUBY_HA_URL": ha_url, "RUBY_GATEWAY_HEALTH_PORT": "0"}
    return gateway_process(env, logs / "first.log"), gateway_process(env, logs / "second.log")


@dataclass
class HoldingProxy:
    """A TCP proxy on 127.0.0.1 in front of Home Assistant that can hold back HA's replies.

    `hold()` stops passing what HA sends (kept, not dropped) while requests still go through:
    HA executes a call and the gateway never hears back, which is the window between an
    effect and its ledger record. `release()` lets the kept bytes through.
    """

    upstream_host: str
    upstream_port: int
    port: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The WebSocket URL to give the gateway instead of HA's."""
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    async def start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        pumps = (
            asyncio.create_task(self._pump(reader, up_writer, held=False)),
            asyncio.create_task(self._pump(up_reader, writer, held=True)),
        )
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, held: bool
    ) -> None:
        while data := await source.read(65536):
            if held:
                await self._open.wait()
            sink.write(data)
            await sink.drain()
