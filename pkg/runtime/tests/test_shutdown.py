"""SIGTERM ends a service cleanly (exit 0, no traceback) whatever its NATS connection's state:
connected (drained), reconnecting or closed (closed at once).

Each service runs as its own process, the way `rubyctl up` runs it, on the test's own
nats-server; the server is stopped by its PID, the service notices (it is reconnecting), and
then it is asked to stop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from nats.aio.msg import Msg

from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation
from ruby_hasim.server import Simulator
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.status import status_ready
from ruby_natsx.testing import ServerFactory, ServiceProcess, eventually
from ruby_natsx.topology import AUDIT_SINK, ENGINE, GATEWAY, STATUS
from ruby_runtime.startup import close_nats

RULE = """
rules:
  - id: porch
    description: porch light with the front door
    triggers: [{kind: state, entity_id: binary_sensor.front_door, to: "on"}]
    actions: [{kind: call, service: light.turn_on, target: {entity_id: light.porch}}]
"""

Ready = Callable[[], Awaitable[bool]]


async def _http_ok(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _gateway(inst: Installation, hasim: Simulator, tmp: Path) -> tuple[dict[str, str], Ready]:
    inst.store_ha_token(hasim.token)
    port = free_port()
    env = {"RUBY_HA_URL": hasim.url, "RUBY_GATEWAY_HEALTH_PORT": str(port)}
    return env, lambda: _http_ok(f"http://127.0.0.1:{port}/readyz")


def _status_ready(inst: Installation, key: str) -> Ready:
    since = datetime.now(UTC)

    async def probe() -> bool:
        nc = await inst.connect("operator")
        try:
            kv = await nc.jetstream().key_value(inst.topology.bucket(STATUS).bucket)
            return await status_ready(kv, key, since)
        finally:
            await nc.close()

    return probe


def _engine(inst: Installation, hasim: Simulator, tmp: Path) -> tuple[dict[str, str], Ready]:
    rules = tmp / "rules"
    rules.mkdir()
    (rules / "porch.yaml").write_text(RULE)
    return {"RUBY_RULES_DIR": str(rules)}, _status_ready(inst, ENGINE)


def _sink(inst: Installation, hasim: Simulator, tmp: Path) -> tuple[dict[str, str], Ready]:
    return {"RUBY_AUDIT_DB": str(tmp / "audit.db")}, _status_ready(inst, AUDIT_SINK)


SERVICES = {  # module: (how to set it up, its durable consumer)
    "ruby_gateway.main": (_gateway, GATEWAY),
    "ruby_engine.main": (_engine, ENGINE),
    "ruby_audit_sink.main": (_sink, AUDIT_SINK),
}


def _pulling(inst: Installation, durable: str) -> Ready:
    """Whether the service's runner has a pull request waiting on its consumer: past start-up,
    in the steady state where a lost server and a stop request can meet."""

    async def probe() -> bool:
        nc = await inst.connect("operator")
        try:
            spec = inst.topology.consumer(durable)
            info = await nc.jetstream().consumer_info(spec.stream, durable)
            return bool(info.num_waiting)
        finally:
            await nc.close()

    return probe


@pytest.mark.parametrize("module", list(SERVICES))
async def test_sigterm_after_nats_is_gone_exits_0_without_a_traceback(
    module: str, secure_installation: Installation, hasim: Simulator, tmp_path: Path
) -> None:
    inst = secure_installation
    setup, durable = SERVICES[module]
    extra, ready = setup(inst, hasim, tmp_path)
    log = tmp_path / "service.log"
    service = ServiceProcess(module, {**os.environ, **inst.environ(), **extra}, log)
    await service.start()
    try:
        await eventually(ready, within=60, message=f"{module} ready")
        await eventually(_pulling(inst, durable), message=f"{module} pulling")
        assert inst.server is not None
        inst.server.stop()  # by its PID; the service is left reconnecting
        await eventually(
            lambda: "nats disconnected" in service.events(), message="the service noticed"
        )
        code = await service.stop()
    finally:
        if service.process is not None and service.process.returncode is None:
            await service.kill9()
    output = log.read_text()
    print(output, file=sys.stderr)  # shown by pytest when the test fails
    assert code == 0, output
    assert "Traceback" not in output


async def test_close_nats_drains_a_live_connection(nats_server_factory: ServerFactory) -> None:
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="test"))
    got: list[bytes] = []

    async def slow(msg: Msg) -> None:  # still handling when the drain starts
        await asyncio.sleep(0.2)
        got.append(msg.data)

    await nc.subscribe("drained", cb=slow)
    await nc.publish("drained", b"one")
    await nc.flush()
    await close_nats(nc)
    assert nc.is_closed
    assert got == [b"one"], "the drain let the subscription finish what it held"


async def test_close_nats_closes_a_reconnecting_connection(
    nats_server_factory: ServerFactory,
) -> None:
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="test"))
    server.stop()
    await eventually(lambda: nc.is_reconnecting, message="reconnecting")
    await asyncio.wait_for(close_nats(nc, within=2), 5)
    assert nc.is_closed


async def test_close_nats_leaves_a_closed_connection_alone(
    nats_server_factory: ServerFactory,
) -> None:
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="test"))
    await nc.close()
    await close_nats(nc)  # no ConnectionClosedError
    assert nc.is_closed
