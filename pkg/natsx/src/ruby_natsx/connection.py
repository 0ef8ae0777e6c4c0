"""Connecting to NATS the one way every Ruby Core process does.

Reconnects forever (a service outlives a nats-server restart), names the connection after the
service, and logs connection state changes through the standard logger, which the runtime
routes into structured logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client

log = logging.getLogger("ruby_natsx.connection")


@dataclass(frozen=True)
class NatsSettings:
    """Where and how to connect. TLS and NKEY credentials arrive with the security model."""

    url: str
    name: str
    connect_timeout: float = 5.0
    reconnect_wait: float = 0.5


async def connect(settings: NatsSettings) -> Client:
    """Connect, retrying the first connection too; afterwards reconnect forever."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnected() -> None:
        log.info("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        settings.url,
        name=settings.name,
        connect_timeout=settings.connect_timeout,
        reconnect_time_wait=settings.reconnect_wait,
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
