"""The pull-consumer runner: decode at the edge, run the handler, publish, then ack (ADR-0024).

Promises:
- A message is acked only after every message its handler returned is stored by JetStream.
  Otherwise its fate is decided in one place (``fate.decide``): nak with backoff, or
  dead-letter (DLQ record and audit record stored first, then the original terminated).
- In flight (received, not yet acked, nak'ed or terminated) never exceeds ``max_inflight``,
  which is at most the consumer's MaxAckPending; at most ``concurrency`` handlers run at once.
  Pull requests ask only for free capacity, so the bound holds without local queues growing.
- Messages whose ``order_key`` is equal are handled one at a time, in stream order.
- Pull requests carry an idle heartbeat; if neither messages nor heartbeats arrive for three
  intervals (a reconnect lost the requests), the runner forgets them and pulls anew, so it
  never silently stops receiving. On a connection made by ``connection.connect`` it pulls
  anew as soon as the client has reconnected: a backlog does not grow for seconds while a
  restarted nats-server holds no pull request.
- Handlers running longer than ``in_progress_interval`` are kept alive with ``+WPI``.
- ``stop()`` stops pulling, naks what has not started, gives running handlers
  ``drain_timeout`` to finish, cancels and naks the rest, then ``run()`` returns. Nothing is
  lost: whatever was not acked is redelivered.
Not thread-safe: one runner, one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from ruby_natsx import tuning
from ruby_natsx.connection import when_reconnected
from ruby_natsx.dlq import dead_letter
from ruby_natsx.errors import PermanentError, UndecodableError
from ruby_natsx.fate import Fate, Verdict, decide
from ruby_natsx.handler import Delivery, Handler, Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import REGISTRY, Registry

log = structlog.get_logger("ruby_natsx.runner")

_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"
_FIRST_FAILURES_KEPT = 10_000


@dataclass(frozen=True)
class RunnerConfig:
    """How one runner consumes one durable; defaults come from ``tuning``."""

    service: str
    stream: str
    consumer: str
    max_inflight: int | None = None
    concurrency: int = tuning.MAX_CONCURRENCY
    batch: int = tuning.FETCH_BATCH
    expires: float = tuning.FETCH_EXPIRES
    idle_heartbeat: float = tuning.PULL_IDLE_HEARTBEAT
    backoff: tuple[float, ...] = tuning.BACKOFF
    in_progress_interval: float = tuning.IN_PROGRESS_INTERVAL
    drain_timeout: float = tuning.DRAIN_TIMEOUT
    order_key: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.idle_heartbeat < self.expires:
            raise ValueError(
                f"idle_heartbeat ({self.idle_heartbeat}s) must be positive and shorter than "
                f"expires ({self.expires}s), or the server refuses every pull request"
            )
        if self.concurrency < 1 or self.batch < 1:
            raise ValueError("concurrency and batch must be at least 1")


@dataclass
class RunnerStats:
    """Counters for metrics and tests; ``inflight`` is the live in-flight count."""

    received: int = 0
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    inflight: int = 0
    max_inflight_seen: int = 0
    pulls: int = 0
    repulls: int = 0


@dataclass
class _Pull:
    remaining: int
    expires_at: float


@dataclass
class _Active:
    msg: Msg
    started: float
    task: asyncio.Task[None] | None = None
    last_progress: float = field(default=0.0)


class Runner:
    """Consumes one durable pull consumer with one handler; see the module doc for promises."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        config: RunnerConfig,
        handler: Handler,
        *,
        registry: Registry = REGISTRY,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self.config = config
        self._handler = handler
        self._registry = registry
        self._publisher = Publisher(nc)
        self.stats = RunnerStats()
        self._pulls: deque[_Pull] = deque()
        self._active: dict[str, _Active] = {}
        self._first_failure: dict[tuple[str, int], datetime] = {}
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._idle = asyncio.Event()
        self._last_seen = time.monotonic()
        self._inbox = ""
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{config.stream}.{config.consumer}"
        self._max_inflight = 1
        self._max_deliver = 0
        lanes = config.concurrency if config.order_key else 1
        self._lanes: list[asyncio.Queue[Msg]] = [asyncio.Queue() for _ in range(lanes)]
        self._background: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        return self.stats.inflight

    async def wait_started(self) -> None:
        await self._started.wait()

    def stop(self) -> None:
        """Ask the runner to drain and return from ``run()``; safe to call more than once."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop()``; return once everything in flight is acked or nak'ed."""
        info = await self._js.consumer_info(self.config.stream, self.config.consumer)
        server_bound = info.config.max_ack_pending or self.config.max_inflight or 1000
        wanted = self.config.max_inflight or server_bound
        self._max_inflight = max(1, min(wanted, server_bound))
        self._max_deliver = info.config.max_deliver or 0
        await self._publisher.start()
        self._inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        workers = [
            asyncio.create_task(self._work(self._lanes[i % len(self._lanes)]))
            for i in range(self.config.concurrency)
        ]
        watchdog = asyncio.create_task(self._watch())
        forget = when_reconnected(self._nc, self._reconnected)
        self._started.set()
        try:
            await self._pump()
            await self._stopping.wait()
        finally:
            forget()
            self._stopping.set()
            # Drain, not unsubscribe: messages already buffered for the callback are handed
            # to it (and nak'ed at once) instead of waiting out AckWait on the server.
            with contextlib.suppress(Exception):  # the connection may be closed already
                await sub.drain()  # type: ignore[no-untyped-call]
            watchdog.cancel()
            await self._drain()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(watchdog, *workers, return_exceptions=True)
            await self._publisher.close()
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)

    # --- pulling -------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Ask for as many messages as there is free capacity for, in batches."""
        if self._stopping.is_set() or not self._nc.is_connected:
            return
        credit = sum(p.remaining for p in self._pulls)
        free = self._max_inflight - self.stats.inflight - credit
        low_water = max(1, min(self.config.batch, self._max_inflight) // 4)
        while free >= low_water or (free > 0 and credit == 0):
            batch = min(free, self.config.batch)
            request = {
                "batch": batch,
                "expires": int(self.config.expires * 1e9),
                "idle_heartbeat": int(self.config.idle_heartbeat * 1e9),
            }
            self._pulls.append(_Pull(batch, time.monotonic() + self.config.expires))
            self.stats.pulls += 1
            await self._nc.publish(self._next_subject, json.dumps(request).encode(), self._inbox)
            credit += batch
            free -= batch

    def _reconnected(self) -> None:
        """The server forgot our pull requests with the old connection: ask again now."""
        self._pulls.clear()
        self._last_seen = time.monotonic()
        self.stats.repulls += 1
        log.info("nats reconnected; pulling again")
        self._later(self._pump())

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _spend_credit(self, count: int = 1) -> None:
        while count and self._pulls:
            oldest = self._pulls[0]
            used = min(count, oldest.remaining)
            oldest.remaining -= used
            count -= used
            if oldest.remaining == 0:
                self._pulls.popleft()

    async def _on_message(self, msg: Msg) -> None:
        self._last_seen = time.monotonic()
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is not None:
            await self._on_status(status, msg)
            return
        if not msg.reply:
            return
        self._spend_credit()
        if self._stopping.is_set():
            await self._settle(msg, Fate(Verdict.NAK))
            return
        self.stats.received += 1
        self.stats.inflight += 1
        self.stats.max_inflight_seen = max(self.stats.max_inflight_seen, self.stats.inflight)
        lane = self._lanes[0]
        if self.config.order_key is not None:
            key = self.config.order_key(msg.subject)
            lane = self._lanes[hash(key) % len(self._lanes)]
        lane.put_nowait(msg)

    async def _on_status(self, status: str, msg: Msg) -> None:
        if status == "100":  # idle heartbeat: the pull request is alive
            return
        # 408 request expired, 409 exceeded limits / leadership change, 404 nothing now:
        # one pull request is over; what it did not deliver is no longer owed.
        if self._pulls:
            self._pulls.popleft()
        description = (msg.headers or {}).get("Description", "")
        if status in {"408", "404", "409"}:
            if status == "409":
                log.info("pull request ended", status=status, description=description)
            await self._pump()
        elif status == "503":  # no responders: JetStream is starting (a restarted server)
            log.info("pull request unanswered: JetStream not ready; pulling again shortly")
            self._later(self._pump_after(tuning.PULL_RETRY_NOT_READY))
        else:  # refused (400 bad request, ...): retried by the watchdog, never in a hot loop
            log.error("pull request refused", status=status, description=description)

    async def _pump_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._pump()

    async def _watch(self) -> None:
        """Re-pull after lost requests, and keep long handlers alive with in-progress acks."""
        interval = min(self.config.idle_heartbeat, self.config.in_progress_interval)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            silent = now - self._last_seen > 3 * self.config.idle_heartbeat
            overdue = self._pulls and now > self._pulls[0].expires_at + self.config.idle_heartbeat
            if self._pulls and (silent or overdue):
                self._pulls.clear()
                self.stats.repulls += 1
                self._last_seen = now
                log.warning("pull requests lost (reconnect?); pulling again")
            await self._pump()
            for active in list(self._active.values()):
                since = now - max(active.started, active.last_progress)
                if since >= self.config.in_progress_interval and active.msg.reply:
                    active.last_progress = now
                    with contextlib.suppress(Exception):
                        await self._nc.publish(active.msg.reply, b"+WPI")

    # --- handling ------------------------------------------------------------------------

    async def _work(self, lane: asyncio.Queue[Msg]) -> None:
        me = asyncio.current_task()
        while True:
            msg = await lane.get()
            self._active[msg.reply] = _Active(msg, time.monotonic(), me)
            try:
                await self._handle(msg)
            finally:
                self._active.pop(msg.reply, None)
                self.stats.inflight -= 1
                if not self._active:
                    self._idle.set()
                if not self._stopping.is_set():
                    await self._pump()

    async def _handle(self, msg: Msg) -> None:
        delivery = _delivery(msg)
        envelope: Envelope[Payload] | None = None
        try:
            try:
                envelope = self._registry.decode(msg.data)
            except ContractError as exc:
                raise UndecodableError(str(exc)) from exc
            with structlog.contextvars.bound_contextvars(
                correlation_id=envelope.correlation_id, causation_id=envelope.id
            ):
                outputs = await self._handler(envelope, delivery)
                await self._publisher.publish(outputs)
        except asyncio.CancelledError:
            await self._settle(msg, Fate(Verdict.NAK))
            raise
        except Exception as exc:
            fate = decide(
                exc,
                delivered=delivery.delivered,
                max_deliver=self._max_deliver,
                backoff=self.config.backoff,
            )
            extra = exc.outputs if isinstance(exc, PermanentError) else ()
            await self._fail(msg, delivery, envelope, fate, extra)
            return
        self._first_failure.pop((delivery.stream, delivery.stream_seq), None)
        await self._settle(msg, Fate(Verdict.ACK))

    async def _fail(
        self,
        msg: Msg,
        delivery: Delivery,
        envelope: Envelope[Payload] | None,
        fate: Fate,
        extra: Sequence[Outbound] = (),
    ) -> None:
        key = (delivery.stream, delivery.stream_seq)
        first = self._first_failure.setdefault(key, datetime.now(UTC))
        if len(self._first_failure) > _FIRST_FAILURES_KEPT:
            self._first_failure.pop(next(iter(self._first_failure)))
        if fate.verdict is Verdict.DEAD_LETTER:
            outputs = [
                *extra,
                *dead_letter(
                    self._subjects,
                    service=self.config.service,
                    delivery=delivery,
                    payload=bytes(msg.data),
                    fate=fate,
                    first_failed_at=first,
                    cause=envelope,
                ),
            ]
            try:
                await self._publisher.publish(outputs)
            except Exception as exc:  # the DLQ is unreachable: keep the message, try later
                log.exception("could not dead-letter; will retry", error=str(exc))
                await self._settle(msg, Fate(Verdict.NAK, delay=self.config.backoff[-1]))
                return
            self._first_failure.pop(key, None)
            log.warning(
                "message dead-lettered",
                subject=delivery.subject,
                stream_seq=delivery.stream_seq,
                reason=str(fate.reason),
                error=fate.error,
            )
        else:
            log.warning(
                "message failed; will retry",
                subject=delivery.subject,
                stream_seq=delivery.stream_seq,
                delivery=delivery.delivered,
                delay=fate.delay,
                error=fate.error,
            )
        await self._settle(msg, fate)

    async def _settle(self, msg: Msg, fate: Fate) -> None:
        """Tell the server this delivery's fate. Ack-type messages are fire-and-forget: a lost
        ack means a redelivery, which idempotency absorbs."""
        if fate.verdict is Verdict.ACK:
            payload = b"+ACK"
            self.stats.acked += 1
        elif fate.verdict is Verdict.NAK:
            payload = b"-NAK"
            if fate.delay:
                payload += b" " + json.dumps({"delay": int(fate.delay * 1e9)}).encode()
            self.stats.nacked += 1
        else:
            payload = b"+TERM"
            self.stats.dead_lettered += 1
        with contextlib.suppress(Exception):
            await self._nc.publish(msg.reply, payload)

    async def _drain(self) -> None:
        for lane in self._lanes:
            while not lane.empty():
                msg = lane.get_nowait()
                self.stats.inflight -= 1
                await self._settle(msg, Fate(Verdict.NAK))
        self._idle.clear()
        if self._active:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.drain_timeout):
                    await self._idle.wait()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _delivery(msg: Msg) -> Delivery:
    """The facts of a delivery, from its ack subject (cheaper than nats-py's Msg.metadata).

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``, or
    with ``<domain>.<account hash>`` after ``$JS.ACK`` and a random token at the end.
    """
    tokens = msg.reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    return Delivery(
        subject=msg.subject,
        stream=tokens[base],
        consumer=tokens[base + 1],
        stream_seq=int(tokens[base + 3]),
        delivered=int(tokens[base + 2]),
        headers=dict(msg.headers or {}),
        published_at=datetime.fromtimestamp(int(tokens[base + 5]) / 1e9, UTC),
    )
