"""Test helpers: the gateway's parts running as the service runs them (``wire``).

Used by the simulator tests and the real Home Assistant suite alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_gateway.wiring import wire
from ruby_natsx.runner import Runner
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually
from ruby_natsx.topology import IDEMPOTENCY, topology


@dataclass(frozen=True)
class Gateway:
    bridge: Bridge
    runner: Runner


@contextlib.asynccontextmanager
async def running_gateway(
    nc: Client,
    subjects: Subjects,
    config: BridgeConfig,
    *,
    owner: str,
    backoff: tuple[float, ...],
) -> AsyncIterator[Gateway]:
    """The bridge and the command runner, connected to HA; both stopped on exit."""
    ledger = await nc.jetstream().key_value(topology(subjects).bucket(IDEMPOTENCY).bucket)
    bridge, runner = wire(nc, subjects, config, ledger, owner=owner, backoff=backoff)
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
