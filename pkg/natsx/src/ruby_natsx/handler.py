"""What a handler is, what it receives and returns, and how middleware wraps it (STYLE.md §1-2).

A handler is a plain async function: it receives a decoded envelope and the facts of its
delivery, and returns the messages to publish. It never acks and never publishes by itself:
the runner publishes what it returns and only then acks. Middleware wraps a handler into a
handler, so retry, idempotency and timeouts are each a small function, chained in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from ruby_natsx.errors import TransientError
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope


@dataclass(frozen=True)
class Outbound:
    """A message to publish: ``Nats-Msg-Id`` is the envelope's id, so a re-publish is a no-op."""

    subject: str
    envelope: Envelope[Payload]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """The facts of one delivery of a message, for handlers and middleware that need them."""

    subject: str
    stream: str
    consumer: str
    stream_seq: int
    delivered: int
    headers: Mapping[str, str]
    published_at: datetime


Handler: TypeAlias = Callable[[Envelope[Payload], Delivery], Awaitable[Sequence[Outbound]]]
"""Decoded message in, messages to publish out; raise errors.* to decide its fate."""

Middleware: TypeAlias = Callable[[Handler], Handler]
"""Wraps a handler into a handler."""


def chain(handler: Handler, *middleware: Middleware) -> Handler:
    """Wrap ``handler``; the first middleware listed is the outermost (runs first)."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler


def timeout(seconds: float) -> Middleware:
    """A handler running longer than ``seconds`` is cancelled and its message retried."""

    def wrap(handler: Handler) -> Handler:
        async def timed(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
            try:
                async with asyncio.timeout(seconds):
                    return await handler(envelope, delivery)
            except TimeoutError:
                raise TransientError(f"handler took longer than {seconds}s") from None

        return timed

    return wrap
