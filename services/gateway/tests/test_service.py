"""The whole gateway service, as `ruby-gateway` runs it, on the secured stack (TLS, NKEY, Vault).

Its NATS permissions are the real ones from the table, so this also proves that the gateway
can do its job with nothing more: load and write its projection, consume its commands,
publish events, outcomes, audit records and its status record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
from nats.js.errors import KeyNotFoundError

from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation
from ruby_hasim.server import Simulator
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import eventually
from ruby_natsx.topology import STATUS
from ruby_schemas.commands import CallServiceV1, ServiceTarget
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.status import GatewayReadiness, GatewayRecord, read_record


async def ready(url: str) -> bool:
    """/readyz answers 200, with a `GatewayReadiness` body that says so."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            body = GatewayReadiness.model_validate_json(await response.read())
            return response.status == 200 and body.ready
    except aiohttp.ClientError:
        return False


async def test_the_gateway_service_starts_executes_a_command_and_stops_cleanly(
    installation: Installation, hasim: Simulator
) -> None:
    installation.store_ha_token(hasim.token)
    port = free_port()
    env = {
        **os.environ,
        **installation.environ(),
        "RUBY_HA_URL": hasim.url,
        "RUBY_GATEWAY_HEALTH_PORT": str(port),
    }
    operator = await installation.connect("operator")
    try:
        kv = await operator.jetstream().key_value(installation.topology.bucket(STATUS).bucket)
        started = datetime.now(UTC)

        async def record() -> GatewayRecord | None:
            """The gateway's status record as a reader validates it, if written by this run."""
            try:
                entry = await kv.get("gateway")
            except KeyNotFoundError:  # not written yet
                return None
            written = read_record(GatewayRecord, entry.value or b"", key="gateway")
            return written if written.updated is not None and written.updated > started else None

        gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ruby_gateway.main",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await eventually(
                lambda: ready(f"http://127.0.0.1:{port}/readyz"),
                within=60,
                message="/readyz answers 200",
            )

            # A command from the engine's identity is executed once, under real permissions.
            light = next(e for e in hasim.states if e.startswith("light."))
            command = CallServiceV1(
                command_id=new_id(),
                domain="light",
                service="turn_off",
                target=ServiceTarget(entity_id=(light,)),
                deadline=datetime.now(UTC) + timedelta(seconds=30),
            )
            nc = await installation.connect("engine")
            publisher = Publisher(nc)
            try:
                envelope = make_envelope(
                    command, source="ruby/engine", message_id=command.command_id
                )
                await publisher.publish(
                    [Outbound(installation.subjects.command("light", "turn_off"), envelope)]
                )
            finally:
                await publisher.close()
                await nc.drain()
            await eventually(lambda: hasim.calls[("light", "turn_off", light)] == 1, within=20)

            # The status record is in the status bucket, under the gateway's own key.
            async def status_written() -> bool:
                written = await record()
                return written is not None and written.ready and written.connected

            await eventually(status_written, within=15, message="status record")
        finally:
            if gateway.returncode is None:
                gateway.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(gateway.communicate(), 30)
            print(stdout.decode(), stderr.decode())  # shown by pytest when the test fails
        output = stdout.decode() + stderr.decode()
        assert gateway.returncode == 0, output
        # Stopped, it said so in its record a last time.

        async def not_ready() -> bool:
            written = await record()
            return written is not None and not written.ready

        await eventually(not_ready, within=10, message="the last record says not ready")
    finally:
        await operator.drain()
    assert hasim.token not in output, "the HA token was logged"
    assert installation.seed("gateway").reveal() not in output
    events = [json.loads(line)["event"] for line in stdout.decode().splitlines()]
    assert "home assistant connected" in events
    assert "gateway stopped" in events
