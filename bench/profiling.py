"""Where a running service spends its CPU: `py-spy` samples it, this sums the samples.

`Profiles` starts one ``py-spy record --format raw`` per process (by PID, non-blocking, idle
threads left out, so a sample is CPU being spent) and stops each by SIGINT, which makes py-spy
write its file. `summary` reads such a file (collapsed stacks: ``frame;frame;... count``) and
gives the share of the samples each *hop* takes: a frame's module decides its hop, the
innermost frame that belongs to one of them wins (so pydantic called from the gateway counts
as pydantic, and JSON inside nats-py as JSON). Also the functions with the most samples of
their own.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HOPS: Final = (
    ("JSON (json, orjson)", re.compile(r"[/(]json/|orjson|_json\.py")),
    ("pydantic validation and dumps", re.compile(r"pydantic")),
    ("templates (jinja2)", re.compile(r"jinja2|ruby_rules/jinja|ruby_rules/templates")),
    ("sqlite (audit store)", re.compile(r"sqlite3|ruby_auditstore")),
    ("logging (structlog, logging)", re.compile(r"structlog|[/(]logging/")),
    ("NATS client (nats-py)", re.compile(r"[/(]nats/")),
    ("WebSocket and HTTP (aiohttp)", re.compile(r"aiohttp|yarl|multidict")),
    ("asyncio event loop", re.compile(r"asyncio/|selectors\.py|uvloop")),
    ("Ruby Core: natsx (runner, publish, KV)", re.compile(r"ruby_natsx")),
    ("Ruby Core: schemas (envelopes)", re.compile(r"ruby_schemas")),
    ("Ruby Core: rules engine", re.compile(r"ruby_rules")),
    ("Ruby Core: the service", re.compile(r"ruby_gateway|ruby_engine|ruby_audit_sink")),
    ("Ruby Core: runtime", re.compile(r"ruby_runtime")),
)
"""Hops, innermost first wins; a sample in none of them is "other" (the interpreter, C)."""


@dataclass(frozen=True)
class Summary:
    """The samples of one process: in all, by hop, and the busiest functions."""

    samples: int
    by_hop: list[tuple[str, int]]
    top: list[tuple[str, int]]


def _hop(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in HOPS:
            if pattern.search(frame):
                return name
    return "other"


def summary(raw: Path, *, top: int = 12) -> Summary:
    """Sum a ``py-spy --format raw`` file (see the module's docstring)."""
    hops: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        hops[_hop(frames)] += count
        own[frames[-1]] += count
    return Summary(total, hops.most_common(), own.most_common(top))


class Profiles:
    """One py-spy per process while the ``with`` block runs; its files in ``out``."""

    def __init__(self, pids: dict[str, int], out: Path, *, rate: int = 250) -> None:
        self._pids, self._out, self._rate = pids, out, rate
        self._spies: dict[str, subprocess.Popen[bytes]] = {}

    def file(self, name: str) -> Path:
        """Where the samples of ``name`` are written."""
        return self._out / f"{name}.txt"

    def __enter__(self) -> Profiles:
        self._out.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for name, pid in self._pids.items():
            argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
            argv += ["--rate", str(self._rate), "--output", str(self.file(name))]
            log = (self._out / f"{name}.log").open("wb")
            self._spies[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own venv's py-spy, our own arguments
        return self

    def __exit__(self, *exc: object) -> None:
        for spy in self._spies.values():
            if spy.poll() is None:
                os.kill(spy.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self._spies.values():
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


def report(profiles: Profiles, names: list[str]) -> list[str]:
    """Printable lines: per process, the share of each hop, then its busiest functions."""
    lines: list[str] = []
    for name in names:
        path = profiles.file(name)
        if not path.exists():
            lines.append(f"  {name}: no samples (see {path.with_suffix('.log')})")
            continue
        found = summary(path)
        if not found.samples:
            lines.append(f"  {name}: no samples")
            continue
        lines.append(f"  {name}: {found.samples} samples")
        for hop, count in found.by_hop:
            lines.append(f"    {100 * count / found.samples:5.1f} %  {hop}")
        lines.append("    busiest functions (own samples):")
        for function, count in found.top:
            lines.append(f"    {100 * count / found.samples:5.1f} %  {function}")
    return lines
