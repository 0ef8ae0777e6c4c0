"""How the gateway's parts fit together: the bridge, and the command runner behind the ledger.

One function, used by the service and by the tests, so the tests run what production runs.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.kv import KeyValue

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_gateway.commands import command_handler, command_key
from ruby_gateway.ordering import TargetOrder, in_turn
from ruby_gateway.projection import Projection
from ruby_natsx import tuning
from ruby_natsx.handler import chain
from ruby_natsx.idempotency import KvIdempotencyStore, idempotent
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import COMMANDS, GATEWAY, PROJECTION, topology


def wire(
    nc: Client,
    subjects: Subjects,
    config: BridgeConfig,
    ledger: KeyValue,
    *,
    owner: str,
    projection: Projection | None = None,
    backoff: tuple[float, ...] = tuning.BACKOFF,
) -> tuple[Bridge, Runner]:
    """The bridge to HA and the runner that executes COMMANDS through it, once per command id.

    ``owner`` names this process in the ledger and must differ from any earlier gateway's
    (the gateway is a singleton: a claim of another owner was left by a dead gateway)."""
    topo = topology(subjects)
    order = TargetOrder()
    bridge = Bridge(nc, subjects, config, topo.bucket(PROJECTION).bucket, projection,
                    on_change=order.saw_change)  # fmt: skip
    handler = chain(
        command_handler(subjects, bridge.connection, order, service=config.service),
        in_turn(order),
        idempotent(KvIdempotencyStore(ledger, owner=owner, singleton=True), key=command_key),
    )
    runner = Runner(
        nc,
        subjects,
        RunnerConfig(
            service=config.service,
            stream=topo.stream(COMMANDS).name,
            consumer=GATEWAY,
            backoff=backoff,
            in_progress_interval=tuning.COMMAND_ACK_WAIT / 3,
        ),
        handler,
    )
    return bridge, runner
