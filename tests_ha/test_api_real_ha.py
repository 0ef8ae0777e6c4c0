"""A service call through the API, retried with the same Idempotency-Key, reaches the real Home
Assistant once (issue 16): the real Traefik in front of the gateway's API, the gateway's
runner executing the command against HA, and an observer counting the ``call_service``
events HA fired."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from ruby_ctl.edge import Edge
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, issue_token
from ruby_gateway.api.edge import EdgeAuth
from ruby_gateway.api.server import ApiServer, Handlers, TlsFiles
from ruby_gateway.api.tokens import TokenBook
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.projection import Projection
from ruby_gateway.testing import running_secure_gateway
from ruby_hasim.testing import HaClient
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.testing import eventually
from ruby_natsx.topology import API_TOKENS, GATEWAY, IDEMPOTENCY
from ruby_runtime.secret import Secret
from ruby_schemas.api_tokens import Scope

from .test_exactly_once_real_ha import ENTITY, turn_on_calls

if TYPE_CHECKING:
    from .conftest import HomeAssistant


async def test_a_retried_api_call_reaches_home_assistant_once(
    secure_installation: Installation,
    home_assistant: HomeAssistant,
    ha_ws: HaClient,
    tmp_path: Path,
) -> None:
    inst = secure_installation
    await ha_ws.command("call_service", domain="input_boolean", service="turn_off",
                        target={"entity_id": ENTITY})  # fmt: skip
    subscription = (await ha_ws.command("subscribe_events", event_type="call_service"))["id"]
    operator, gateway_nc = await inst.connect(OPERATOR), await inst.connect(GATEWAY)
    book = TokenBook()
    ledger = await gateway_nc.jetstream().key_value(inst.topology.bucket(IDEMPOTENCY).bucket)
    pki, api_port = inst.state.pki, free_port()
    server = ApiServer(
        Handlers.on(gateway_nc, inst.subjects, Projection, ledger),
        EdgeAuth(book, gateway_nc, inst.subjects),
        TlsFiles(pki.directory / "gateway-api.pem", pki.directory / "gateway-api.key", pki.ca_cert),
        port=api_port,
    )
    edge = Edge(tmp_path / "traefik", pki, api_port, https_port=0, http_port=None)
    config = BridgeConfig(url=home_assistant.url, token=Secret(home_assistant.token, "ha"))
    try:
        await book.follow(gateway_nc, inst.topology.bucket(API_TOKENS).bucket)
        await server.start()
        edge.start()
        token = await issue_token(operator, inst, "ha-suite", Scope.CONTROL)
        await eventually(lambda: len(book) == 1, message="the token followed")
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "real-ha-1"}
        tls = ssl.create_default_context(cafile=str(pki.ca_cert))
        async with (
            running_secure_gateway(inst, config, backoff=(0.2, 0.2, 0.2)),
            aiohttp.ClientSession() as http,
        ):

            async def call() -> str:
                async with http.post(
                    f"{edge.url}/services/input_boolean/turn_on", headers=headers, ssl=tls,
                    json={"target": {"entity_id": ENTITY}},
                ) as reply:  # fmt: skip
                    assert reply.status == 202, await reply.text()
                    return str((await reply.json())["command_id"])

            async def status(cid: str) -> object:
                async with http.get(f"{edge.url}/commands/{cid}", headers=headers,
                                    ssl=tls) as reply:  # fmt: skip
                    return (await reply.json()).get("status")

            ids = {await call() for _ in range(3)}  # a client that retried twice
            assert len(ids) == 1
            (cid,) = ids
            await eventually(lambda: _is(status(cid), "succeeded"), message="executed by HA")
            assert await call() == cid  # one more retry after it ran
            assert await turn_on_calls(ha_ws, subscription) == 1
    finally:
        edge.stop()
        await server.close()
        await book.close()
        await gateway_nc.drain()
        await operator.drain()


async def _is(found: Awaitable[object], want: str) -> bool:
    return await found == want
