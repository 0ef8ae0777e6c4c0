"""A worker process for crash tests: the runner + idempotency around an echo handler.

usage: worker_app.py URL PREFIX CONSUMER EFFECTS_FILE [--die-before-ack]

Each handled message appends its id to EFFECTS_FILE (one line per handler run) and returns one
output linked to it. With --die-before-ack the process SIGKILLs itself right after the first
message's handler and ledger completed, before anything is published or acked. SIGTERM stops
the runner gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.handler import Delivery, Handler, Outbound, chain
from ruby_natsx.idempotency import KvIdempotencyStore, idempotent
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, IDEMPOTENCY, topology
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.rules import RuleFiredV1


def die_before_ack(handler: Handler) -> Handler:
    async def wrapped(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        outputs = await handler(envelope, delivery)
        os.kill(os.getpid(), signal.SIGKILL)
        return outputs

    return wrapped


async def main(url: str, prefix: str, consumer: str, log: TextIO, die: bool) -> None:
    subjects = Subjects(prefix)
    topo = topology(subjects)
    nc = await connect(NatsSettings(url=url, name="worker", reconnect_wait=0.1))
    kv = await nc.jetstream().key_value(topo.bucket(IDEMPOTENCY).bucket)
    store = KvIdempotencyStore(kv, owner=f"worker-{os.getpid()}", lease=1.0)

    async def echo(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        log.write(envelope.id + "\n")
        fired = RuleFiredV1(rule_id="echo", rule_version="v1", file="t", trigger_id=envelope.id)
        out = make_envelope(fired, source="ruby/test", cause=envelope)
        return [Outbound(subjects.rule("echo", "fired"), out)]

    handler = chain(echo, *([die_before_ack] if die else []), idempotent(store))
    runner = Runner(
        nc,
        subjects,
        RunnerConfig(
            service="engine",
            stream=topo.stream(EVENTS).name,
            consumer=consumer,
            backoff=(0.1,),
            idle_heartbeat=0.2,
            concurrency=8,
        ),
        handler,
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.stop)
    print("ready", flush=True)
    await runner.run()
    await nc.drain()


if __name__ == "__main__":
    args = sys.argv[1:]
    with open(args[3], "a", buffering=1) as effects:  # one line per handler run
        asyncio.run(main(args[0], args[1], args[2], effects, "--die-before-ack" in args))
