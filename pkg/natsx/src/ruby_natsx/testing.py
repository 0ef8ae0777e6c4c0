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
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_natsx.apply import apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.server import NatsServer, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import Topology, topology

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
