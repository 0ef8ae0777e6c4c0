"""A webhook through the real Traefik starts its rule, once per Idempotency-Key (issue 16,
ADR-0037)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from ruby_ctl.testing import Installation
from ruby_engine.testing import running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import (
    ENGINE,
    GATEWAY,
)
from ruby_runtime.secret import Secret

if TYPE_CHECKING:
    from .conftest import Stack


WEBHOOK_RULE = """
rules:
  - id: garage_opened
    description: a phone says the garage door opened; light the garage
    triggers:
      - {kind: webhook, webhook_id: garage-door}
    conditions:
      - {kind: expression, value: "{{ trigger.json.open and trigger.query.via == 'phone' }}"}
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: LIGHT}
        data: {brightness: "{{ trigger.json.level }}"}
"""


async def test_a_webhook_starts_its_rule_once_per_idempotency_key(
    stack: Stack, secure_installation: Installation, hasim: Simulator, tmp_path: Path
) -> None:
    """POST /webhooks/garage-door through Traefik -> EVENTS -> the engine's rule -> COMMANDS
    -> the gateway -> Home Assistant: a call retried with the same key calls HA once."""
    inst = secure_installation
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "garage.yaml").write_text(WEBHOOK_RULE.replace("LIGHT", light))
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    engine = await inst.connect(ENGINE)
    try:
        js = stack.operator.jetstream()
        async with (
            running_secure_gateway(inst, config, backoff=(0.1,)),
            running_engine(engine, inst.subjects, rules),
            aiohttp.ClientSession() as http,
        ):

            async def call(key: str, body: object) -> str:
                headers = {
                    "Authorization": f"Bearer {stack.tokens['control']}",
                    "Idempotency-Key": key,
                }
                async with http.post(
                    f"{stack.edge.url}/webhooks/garage-door?via=phone", json=body, headers=headers,
                    ssl=stack.client_ssl(),
                ) as reply:  # fmt: skip
                    assert reply.status == 202, await reply.text()
                    accepted = await reply.json()
                    assert accepted["webhook_id"] == "garage-door"
                    return str(accepted["event_id"])

            async def settled() -> bool:
                return await consumers_idle(js, inst.topology, ENGINE, GATEWAY)

            def turned_on() -> int:
                return hasim.calls[("light", "turn_on", light)]

            opened = {"open": True, "level": 120}
            # A client that retries twice: one event.
            first = {await call("garage-1", opened) for _ in range(3)}
            assert len(first) == 1
            await eventually(lambda: turned_on() == 1, message="the rule called HA")
            # trigger.json reached Home Assistant.
            assert hasim.states[light].attributes.get("brightness") == 120
            assert await call("garage-1", opened) in first  # retried after it ran
            await eventually(settled, message="engine and gateway idle")
            assert turned_on() == 1
            await call("garage-2", {"open": False, "level": 5})  # the condition reads the body
            await eventually(settled, message="engine and gateway idle")
            assert turned_on() == 1
            await call("garage-3", opened)  # a new key is a new call
            await eventually(lambda: turned_on() == 2, message="the second call ran")
    finally:
        await engine.drain()
