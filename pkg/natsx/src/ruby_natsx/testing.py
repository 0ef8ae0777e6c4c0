"""Pytest fixtures that run tests against a real nats-server (like ``structlog.testing``).

Load with ``-p ruby_natsx.testing``. Fixtures, chained as nats.py does it:

- ``nats_server``: one real nats-server with JetStream for the session, on a free port, with a
  temporary store, stopped by PID at the end.
- ``nats_server_factory``: start servers of a test's own (to kill or restart them); each is
  stopped when the test ends.
- ``prefix`` / ``subjects``: a fresh subject prefix per test, so tests never share subjects,
  streams, consumers or buckets.
- ``nc`` / ``js``: a connection to ``nats_server`` and its JetStream context.
- ``topology_applied``: the installation's topology for this test's prefix, applied; its
  streams are deleted after the test.

Helpers: ``eventually`` (poll a condition instead of sleeping), ``state_changed`` and
``publish_states`` (real contract messages into real streams), ``put_dead_letter`` (a dead
letter as a consumer's runner stores it).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from ruby_natsx.apply import apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.dlq import dead_letter
from ruby_natsx.fate import Fate, Reason, Verdict
from ruby_natsx.handler import Delivery
from ruby_natsx.publish import Publisher
from ruby_natsx.server import NatsServer, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import Topology, topology
from ruby_schemas.envelope import Envelope, make_envelope, new_id
from ruby_schemas.ha_events import EntityState, StateChangedV1
from ruby_schemas.registry import encode

ServerFactory = Callable[..., NatsServer]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(ServerConfig(state_dir=tmp_path_factory.mktemp("nats")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[NatsServer] = []

    def start(**config: object) -> NatsServer:
        state = tmp_path / f"nats-{len(started)}"
        server = NatsServer(ServerConfig(state_dir=state, **config))  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def subjects(prefix: str) -> Subjects:
    return Subjects(prefix)


@pytest_asyncio.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(NatsSettings(url=nats_server.url, name="pytest"))
    yield client
    await client.drain()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest_asyncio.fixture
async def topology_applied(js: JetStreamContext, subjects: Subjects) -> AsyncIterator[Topology]:
    topo = topology(subjects)
    await apply_topology(js, topo)
    yield topo
    for stream in (*topo.streams, *(b.stream() for b in topo.buckets)):
        await js.delete_stream(stream.name)


# --- helpers for tests that drive messages through real streams ---------------------------


async def eventually(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    within: float = 30.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it holds; fail the test with ``message`` after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{message} did not hold within {within}s")
        await asyncio.sleep(interval)


def state_changed(entity_id: str, state: str, *, n: int = 0) -> Envelope[StateChangedV1]:
    """A fresh ``ha.state_changed.v1`` envelope (new id) for ``entity_id`` turning ``state``."""
    now = datetime.now(UTC)
    new = EntityState(state=state, attributes={"n": n}, last_changed=now, last_updated=now)
    payload = StateChangedV1(
        entity_id=entity_id,
        old_state=None,
        new_state=new,
        context_id=new_id(),
        context_parent_id=None,
    )
    return make_envelope(payload, source="ruby/test")


async def publish_states(
    js: JetStreamContext, subjects: Subjects, count: int, *, entities: int = 10, window: int = 512
) -> list[str]:
    """Publish ``count`` state changes over ``entities`` lights, pipelined; return their ids."""
    ids: list[str] = []
    pending: list[asyncio.Future[PubAck]] = []
    for i in range(count):
        entity = f"light.l{i % entities}"
        envelope = state_changed(entity, "on" if i % 2 else "off", n=i)
        ids.append(envelope.id)
        pending.append(
            await js.publish_async(
                subjects.ha_state(entity), encode(envelope), headers={"Nats-Msg-Id": envelope.id}
            )
        )
        if len(pending) >= window:
            await asyncio.wait_for(asyncio.gather(*pending), 30)
            pending.clear()
    # Bounded: nats-py never times out a publish_async future whose connection died.
    await asyncio.wait_for(asyncio.gather(*pending), 30)
    return ids


async def put_dead_letter(
    nc: Client,
    subjects: Subjects,
    *,
    stream: str,
    consumer: str,
    subject: str,
    stream_seq: int,
    payload: bytes,
    reason: Reason = Reason.MAX_DELIVERIES,
) -> int:
    """Store the dead letter of a message of ``stream`` (at ``stream_seq``, on ``subject``) that
    ``consumer`` gave up on, and its audit record, as that consumer's runner does: ``nc`` must
    be connected as the consumer's service. Returns its DLQ sequence. Its id derives from the
    origin, so the DLQ keeps one letter per (stream, sequence) within its duplicate window."""
    now = datetime.now(UTC)
    delivery = Delivery(subject, stream, consumer, stream_seq, 5, {"X-Origin": "test"}, now)
    outputs = dead_letter(
        subjects,
        service=consumer,
        delivery=delivery,
        payload=payload,
        fate=Fate(Verdict.DEAD_LETTER, reason=reason, error="boom"),
        first_failed_at=now,
        cause=None,
    )
    publisher = Publisher(nc)
    try:
        seq, _audit = await publisher.publish(outputs)
    finally:
        await publisher.close()
    return seq


async def jetstream_ready(js: JetStreamContext) -> bool:
    """True once a JetStream API round trip succeeds (after a server restart, say)."""
    try:
        await js.account_info()
    except Exception:  # not reachable yet: the caller polls
        return False
    return True


class ServiceProcess:
    """A service run as its own process (``python -m <module>`` with ``env``), output appended
    to ``log``; stopped by its PID with SIGTERM, or killed with SIGKILL to test recovery."""

    def __init__(self, module: str, env: Mapping[str, str], log: Path) -> None:
        self.module = module
        self.env = dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, env=self.env, stdout=out, stderr=out
            )

    async def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, then its exit code (30 s at most)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)

    def events(self) -> list[str]:
        """The ``event`` of every JSON log line written so far."""
        return [
            json.loads(line)["event"]
            for line in self.log.read_text().splitlines()
            if line.startswith("{")
        ]


async def consumers_idle(js: JetStreamContext, topo: Topology, *durables: str) -> bool:
    """Whether each named durable consumer has nothing pending and nothing unacknowledged:
    every message published so far was handled (for ``eventually``, instead of a sleep)."""
    for durable in durables:
        spec = topo.consumer(durable)
        info = await js.consumer_info(spec.stream, durable)
        if info.num_pending or info.num_ack_pending:
            return False
    return True
