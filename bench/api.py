"""The API through Traefik: requests per second and what they cost (``make bench-api``).

A real ``rubyctl up`` (demo home, every port free, a temporary state directory), tokens made
with ``rubyctl token create`` (one per client: Traefik's rate limit is per token, 100/s), then
for ``--seconds`` each (default 10), ``--clients`` concurrent clients (default 16):

- ``GET /api/v1/states``: the demo home's projection;
- ``POST /api/v1/services/light/turn_on`` on the demo home's hallway light: each request a new
  command (no Idempotency-Key), executed by the gateway against the simulator.

Printed per route: requests/s, latency p50/p99/max, errors, and the CPU the gateway and
Traefik used, in ms per request (from their PID files and ``psutil``). Events fanned out to
WebSocket clients are not measured yet: the WebSocket stream is not built (issue 16). Prints
figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
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

from ruby_ctl.testing import UpProcess, porch_rules


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
            print("WebSocket fan-out: not measured (the stream is not built yet)")
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


if __name__ == "__main__":
    sys.exit(main())
