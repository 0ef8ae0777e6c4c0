"""The nats-server process helper: loopback only, stopped by PID, restarts keep port and data."""

import os
from pathlib import Path

import pytest

from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.server import NatsServer, NatsServerError, ServerConfig
from ruby_natsx.testing import ServerFactory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_restart_keeps_the_port_and_the_stored_messages(
    nats_server_factory: ServerFactory,
) -> None:
    server = nats_server_factory()
    assert server.url.startswith("nats://127.0.0.1:")
    port, first_pid = server.port, server.pid
    assert first_pid is not None

    nc = await connect(NatsSettings(url=server.url, name="t"))
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["s.>"])
    await js.publish("s.1", b"kept")
    await nc.close()

    server.kill()  # a crash, not a clean shutdown
    assert not _alive(first_pid)
    server.start()
    assert server.port == port
    assert server.pid != first_pid

    nc = await connect(NatsSettings(url=server.url, name="t"))
    msg = await nc.jetstream().get_msg("S", 1)
    assert msg.data == b"kept"
    await nc.close()


def test_stop_ends_the_process_by_pid(nats_server_factory: ServerFactory) -> None:
    server = nats_server_factory()
    pid = server.pid
    assert pid is not None
    assert _alive(pid)
    assert server.stop() == 0
    assert not _alive(pid)


def test_a_server_that_cannot_start_reports_its_log(
    tmp_path: Path, nats_server_factory: ServerFactory
) -> None:
    taken = nats_server_factory()
    clash = NatsServer(ServerConfig(state_dir=tmp_path / "clash", port=taken.port or 0))
    with pytest.raises(NatsServerError, match="exited with code"):
        clash.start(timeout=10)
    assert "address already in use" in str(clash._log_tail())
