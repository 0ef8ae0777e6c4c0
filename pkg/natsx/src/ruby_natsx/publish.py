"""Publishing to JetStream with ``Nats-Msg-Id`` on every message and a bound on waiting.

Publishes are pipelined: every message of a call is sent, then all acknowledgements are
awaited, so a handler's outputs cost one round trip together. Replies arrive on one wildcard
subscription below the connection's own inbox (``_INBOX_<identity>``, ADR-0005); one sweeper
task fails acknowledgements overdue by ``timeout`` with ``TransientError``, so an input is
retried, never acked without its effects, even when a reconnect swallowed a reply. (nats-py's
``publish_async`` never times out such a future, and its per-call bookkeeping cost a third of
the runner's time per message: ADR-0024.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Mapping, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ruby_natsx import tuning
from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Outbound
from ruby_schemas.registry import encode

MSG_ID = "Nats-Msg-Id"


class Publisher:
    """Publishes envelopes and raw messages; safe to share between concurrent handlers.

    ``start`` before use (``publish`` starts it lazily too) and ``close`` when done; ``close``
    fails whatever is still waiting with ``TransientError``.
    """

    def __init__(self, nc: Client, *, timeout: float = tuning.PUBLISH_TIMEOUT) -> None:
        self._nc = nc
        self._timeout = timeout
        self._pending: dict[str, tuple[asyncio.Future[int], float]] = {}
        self._tokens = itertools.count()
        self._prefix = ""
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sub is not None:
            return
        inbox = self._nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await self._nc.subscribe(inbox + ".*", cb=self._on_reply)
        self._sweeper = asyncio.create_task(self._sweep(), name="publisher-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await self._sub.unsubscribe()
        self._sub = self._sweeper = None
        self._fail_all("the publisher was closed")

    async def publish(self, outbound: Sequence[Outbound]) -> list[int]:
        """Publish every message; return their stream sequences once JetStream stored each
        (or recognised it as a duplicate). Raises ``TransientError`` otherwise."""
        if not outbound:
            return []
        return await self._publish_all(
            [
                (o.subject, encode(o.envelope), {**o.headers, MSG_ID: o.envelope.id})
                for o in outbound
            ]
        )

    async def publish_raw(
        self, subject: str, payload: bytes, headers: Mapping[str, str], msg_id: str
    ) -> int:
        """Publish bytes as they are (a dead letter's original payload) with ``msg_id``."""
        (seq,) = await self._publish_all([(subject, payload, {**headers, MSG_ID: msg_id})])
        return seq

    async def send(
        self, subject: str, payload: bytes, headers: Mapping[str, str]
    ) -> asyncio.Future[int]:
        """Send one message and return the future of its acknowledgement (stream sequence).

        For pipelines that keep their own window of unacknowledged publishes; the future fails
        with ``TransientError`` after ``timeout``, like ``publish``.
        """
        await self.start()
        return await self._send(subject, payload, dict(headers), time.monotonic() + self._timeout)

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str], deadline: float
    ) -> asyncio.Future[int]:
        token = str(next(self._tokens))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[token] = (future, deadline)
        try:
            await self._nc.publish(subject, payload, self._prefix + token, headers)
        except Exception as exc:  # closed, or over the pending buffer while reconnecting
            self._pending.pop(token, None)
            future.cancel()
            raise TransientError(f"publish to {subject} failed: {exc!r}") from exc
        return future

    async def _publish_all(self, items: Sequence[tuple[str, bytes, dict[str, str]]]) -> list[int]:
        await self.start()
        deadline = time.monotonic() + self._timeout
        futures = [
            await self._send(subject, payload, headers, deadline)
            for subject, payload, headers in items
        ]
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # leave nothing behind that nobody will look at
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            raise

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if entry is None or entry[0].done():
            return
        future = entry[0]
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(TransientError("no stream is listening on that subject"))
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            future.set_exception(TransientError(f"unreadable publish acknowledgement {msg.data!r}"))
            return
        error = reply.get("error")
        if error:
            future.set_exception(
                TransientError(
                    f"JetStream refused the publish: {error.get('description')} "
                    f"(code {error.get('err_code')})"
                )
            )
        else:
            future.set_result(int(reply.get("seq", 0)))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._timeout / 4))
            now = time.monotonic()
            overdue = [t for t, (_, deadline) in self._pending.items() if deadline < now]
            for token in overdue:
                future, _ = self._pending.pop(token)
                if not future.done():
                    future.set_exception(
                        TransientError(
                            f"JetStream did not acknowledge a publish within {self._timeout}s"
                        )
                    )

    def _fail_all(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(TransientError(why))
