"""The API through Traefik: requests per second and what they cost (``make bench-api``).

A real ``rubyctl up`` (demo home, every port free, a temporary state directory), tokens made
with ``rubyctl token create`` (one per client: Traefik's rate limit is per token, 100/s), then
for ``--seconds`` each (default 10), ``--clients`` concurrent clients (default 16):

- ``GET /api/v1/states``: the demo home's projection;
- ``POST /api/v1/services/light/turn_on`` on the demo home's hallway light: each request a new
  command (no Idempotency-Key), executed by the gateway against the simulator.

Printed per route: requests/s, latency p50/p99/max, errors, and the CPU the gateway and
Traefik used, in ms per request (from their PID files and ``psutil``).

Then the event stream: ``--ws-clients`` WebSocket clients (default 10) on ``/api/v1/ws``
(``kinds=states&entities=light.bench_*``) while the operator publishes ``--events`` state
changes (default 20,000) into EVENTS as fast as JetStream takes them. Printed: events/s
delivered to each client and in all, the delay from publishing to a client receiving (p50/p99),
and the gateway's and Traefik's CPU per 1,000 events delivered. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
from nats.aio.client import Client

from ruby_ctl.operator import connect_operator, operator_settings
from ruby_ctl.testing import UpProcess, porch_rules
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import state_changed
from ruby_schemas.registry import encode


@dataclass
class Result:
    route: str
    done: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_ms: dict[str, float]

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        cpu = ", ".join(f"{name} {ms / max(self.done, 1):.2f}" for name, ms in self.cpu_ms.items())
        return (
            f"{self.route:44} {self.done / self.seconds:8.0f} req/s  p50 "
            f"{statistics.median(lat) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  max "
            f"{lat[-1] * 1000:6.1f} ms  errors {self.errors}  CPU ms/request: {cpu}"
        )


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        found[name] = times.user + times.system
    return found


async def load(
    method: str,
    url: str,
    tokens: list[str],
    tls: ssl.SSLContext,
    seconds: float,
    body: dict[str, object] | None,
) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(token: str) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                start = time.monotonic()
                async with http.request(method, url, headers=headers, json=body, ssl=tls) as reply:
                    await reply.read()
                    if reply.status >= 400:
                        errors += 1
                        continue
                latencies.append(time.monotonic() - start)

    await asyncio.gather(*(client(token) for token in tokens))
    return len(latencies), errors, latencies


async def measure(
    route: str, method: str, url: str, tokens: list[str], tls: ssl.SSLContext,
    seconds: float, pids: dict[str, int], body: dict[str, object] | None = None,
) -> Result:  # fmt: skip
    await load(method, url, tokens, tls, 1.0, body)  # warm-up
    before = cpu_seconds(pids)
    start = time.monotonic()
    done, errors, latencies = await load(method, url, tokens, tls, seconds, body)
    took = time.monotonic() - start
    after = cpu_seconds(pids)
    cpu = {name: (after[name] - before[name]) * 1000 for name in pids}
    return Result(route, done, errors, took, latencies, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0, help="per route (default 10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent (default 16)")
    parser.add_argument("--ws-clients", type=int, default=10, help="WebSocket (default 10)")
    parser.add_argument("--events", type=int, default=20_000, help="to fan out (default 20000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ruby-bench-api-") as tmp:
        root = Path(tmp)
        up = UpProcess(root / "state", porch_rules(root), "--quiet")
        try:
            up.read_until("Ruby Core is up")
            api = up.find(r"api       (https://127\.0\.0\.1:\d+/api/v1)").group(1)
            env = {**os.environ, **up.operator_env()}
            print(f"bench-api: stack up; creating {args.clients} tokens", flush=True)
            tokens = [
                subprocess.run(  # noqa: S603 - our own CLI
                    [sys.executable, "-m", "ruby_ctl", "token", "create", f"bench-{i}",
                     "--scope", "control", "--ttl", "1h"],
                    env=env, capture_output=True, text=True, check=True, timeout=60,
                ).stdout.strip()
                for i in range(args.clients)
            ]  # fmt: skip
            pids = {name: up.pids()[name] for name in ("gateway", "traefik")}
            tls = ssl.create_default_context(cafile=str(root / "state" / "pki" / "ca.pem"))
            print(
                f"bench-api: {args.clients} clients, {args.seconds:.0f} s per route, "
                f"{os.cpu_count()} CPUs",
                flush=True,
            )
            results = asyncio.run(run(api, tokens, tls, args.seconds, pids))
            for result in results:
                print(result.line())
            print(
                f"bench-api: {args.ws_clients} WebSocket clients, {args.events} events",
                flush=True,
            )
            fan = FanOut(api, tokens[: args.ws_clients], tls, pids, env)
            print(asyncio.run(fan.measure(args.events)))
        finally:
            up.kill()
    return 0


async def run(
    api: str, tokens: list[str], tls: ssl.SSLContext, seconds: float, pids: dict[str, int]
) -> list[Result]:
    body: dict[str, object] = {"target": {"entity_id": "light.hallway"}}
    return [
        await measure("GET /api/v1/states", "GET", f"{api}/states", tokens, tls, seconds, pids),
        await measure("POST /api/v1/services/light/turn_on", "POST",
                      f"{api}/services/light/turn_on", tokens, tls, seconds, pids, body),
    ]  # fmt: skip


@dataclass
class FanOut:
    """State changes published into EVENTS, fanned out by the gateway to WebSocket clients."""

    api: str
    tokens: list[str]
    tls: ssl.SSLContext
    pids: dict[str, int]
    env: dict[str, str]

    async def measure(self, count: int) -> str:
        url = self.api.replace("https://", "wss://") + "/ws?kinds=states&entities=light.bench_*"
        sent: dict[int, float] = {}
        delays: list[float] = []
        finished: list[float] = []
        async with aiohttp.ClientSession() as http:
            sockets = [
                await http.ws_connect(url, headers={"Authorization": f"Bearer {t}"}, ssl=self.tls)
                for t in self.tokens
            ]
            for ws in sockets:
                await ws.receive_json(timeout=10)  # the hello

            async def client(ws: aiohttp.ClientWebSocketResponse) -> None:
                got = 0
                while got < count:
                    frame = json.loads((await ws.receive(timeout=60)).data)
                    if frame["type"] == "event":
                        n = frame["event"]["data"]["new_state"]["attributes"]["n"]
                        delays.append(time.monotonic() - sent[n])
                        got += 1
                finished.append(time.monotonic())

            settings = operator_settings(self.env)
            nc = await connect_operator(settings, name="bench-api")
            try:
                readers = [asyncio.create_task(client(ws)) for ws in sockets]
                before = cpu_seconds(self.pids)
                start = time.monotonic()
                await publish(nc, Subjects(settings.prefix), count, sent)
                published = time.monotonic() - start
                await asyncio.gather(*readers)
                took = max(finished) - start
                after = cpu_seconds(self.pids)
            finally:
                await nc.drain()
                for ws in sockets:
                    await ws.close()
        delivered = count * len(sockets)
        delays.sort()
        cpu = ", ".join(
            f"{name} {(after[name] - before[name]) * 1000 / delivered * 1000:.0f}"
            for name in self.pids
        )
        return (
            f"GET /api/v1/ws fan-out to {len(sockets)} clients: {count} events published in "
            f"{published:.1f} s ({count / published:.0f}/s); each client received all in "
            f"{took:.1f} s: {count / took:.0f} events/s per client, {delivered / took:.0f}/s in "
            f"all; delay p50 {delays[len(delays) // 2] * 1000:.0f} ms, p99 "
            f"{delays[int(len(delays) * 0.99)] * 1000:.0f} ms; CPU ms per 1,000 events "
            f"delivered: {cpu}"
        )


async def publish(nc: Client, subjects: Subjects, count: int, sent: dict[int, float]) -> None:
    """``count`` state changes of ten bench lights, pipelined 512 at a time."""
    js = nc.jetstream()
    pending = []
    for n in range(count):
        envelope = state_changed(f"light.bench_{n % 10}", "on" if n % 2 else "off", n=n)
        sent[n] = time.monotonic()
        pending.append(await js.publish_async(
            subjects.ha_state(envelope.data.entity_id), encode(envelope)))  # fmt: skip
        if len(pending) >= 512:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


if __name__ == "__main__":
    sys.exit(main())
