"""The stack under test: ``rubyctl up`` on free ports and a fresh state directory, watched.

``rubyctl up --quiet`` runs as our child; its console lines are read from its stdout pipe (and
copied to ``<state>/chaos-up.log``) for the moments each service is ready again. A kill takes
the PID from ``<state>/run/<name>.pid`` (or, failing that, from up's console), and only a PID
that is a descendant of our own ``rubyctl up`` is ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

UP_PREFIX = "rubyctl up: "
NAMES = {
    "gateway": ("gateway",),
    "engine": ("engine",),
    "audit_sink": ("audit", "audit_sink", "audit-sink", "audit sink"),
    "nats-server": ("nats-server", "nats"),
}
"""Each kind of kill: the names ``rubyctl up`` may give it (pid file, console)."""
_PID_LINE = re.compile(
    r"^(?P<name>[\w -]+?) (?:pid (?P<pid>\d+) (?:started|listening)|"
    r"restarted \(pid (?P<restarted>\d+)\))"
)
_READY_LINE = re.compile(r"^(?P<name>[\w -]+?) ready\b")
UP_WITHIN = 240.0
"""Seconds ``rubyctl up`` has to say the stack is up (OpenBao, bootstrap, NATS, services)."""


def kind_of(name: str) -> str | None:
    """The kind of kill (`KINDS`) a name of ``rubyctl up`` stands for, if any."""
    name = name.strip().lower()
    return next((kind for kind, names in NAMES.items() if name in names), None)


UP = ("", "up", None)
"""`understand`'s answer to ``Ruby Core is up``."""


def understand(line: str) -> tuple[str, str, int | None] | None:
    """(kind, what, pid) for a line of ``rubyctl up`` about a process we kill: ``what`` is
    ``started`` or ``restarted`` (with its PID) or ``ready``; `UP` once the stack is up."""
    if not line.startswith(UP_PREFIX):
        return None
    said = line[len(UP_PREFIX) :]
    if said.startswith("Ruby Core is up"):
        return UP
    if (m := _PID_LINE.match(said)) and (kind := kind_of(m["name"])):
        if m["restarted"] is not None:
            return kind, "restarted", int(m["restarted"])
        return kind, "started", int(m["pid"])
    if (m := _READY_LINE.match(said)) and (kind := kind_of(m["name"])):
        return kind, "ready", None
    return None


class PortsBusyError(RuntimeError):
    """``rubyctl up`` refused to start: a port of ours is still held (TIME_WAIT)."""


def _bindable(port: int) -> bool:
    """As ``rubyctl up`` checks a port: a bind without SO_REUSEADDR."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(pair: bool = False) -> int:
    """A free port of 127.0.0.1 (with ``pair``, the next one is free too: OpenBao's cluster)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < 65535 and (not pair or _bindable(port + 1)):
            return port


@dataclass(frozen=True)
class Ports:
    nats: int
    http: int
    vault: int
    gateway: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(pair=True), free_port())


@dataclass(frozen=True)
class UpEvent:
    """One of ``rubyctl up``'s own lines, understood: ``what`` is ready / pid."""

    at: float
    kind: str
    what: str
    pid: int | None = None


@dataclass
class Stack:
    state_dir: Path
    ports: Ports
    rules_dir: Path
    ha_url: str
    rubyctl: str
    process: asyncio.subprocess.Process | None = None
    events: list[UpEvent] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    up_at: float | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``rubyctl up`` has exited and its output is read to the end."""
    _reader: asyncio.Task[None] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The ``RUBY_*`` settings that lead rubyctl to this stack."""
        return {
            **os.environ,
            "RUBY_STATE_DIR": str(self.state_dir),
            "RUBY_NATS_URL": f"tls://127.0.0.1:{self.ports.nats}",
            "RUBY_VAULT_ADDR": f"http://127.0.0.1:{self.ports.vault}",
            "RUBY_VAULT_PORT": str(self.ports.vault),
            "RUBY_LOG_LEVEL": os.environ.get("RUBY_LOG_LEVEL", "WARNING"),
        }

    async def ctl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:  # noqa: ASYNC109  # each command has its own bound
        """Run ``rubyctl ARGS`` against this stack; its stdout, or RuntimeError with its end."""
        proc = await asyncio.create_subprocess_exec(
            self.rubyctl,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data = stdin.encode() if stdin is not None else None
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"rubyctl {args[0]} took more than {timeout:.0f} s") from None
        if proc.returncode != 0:
            said = (out + err).decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"rubyctl {' '.join(args[:2])} failed: {' / '.join(said)}")
        return out.decode(errors="replace")

    async def prepare(self, token: str) -> None:
        """Bootstrap the fresh state directory and store the HA token in its Vault."""
        vault = ("--state-dir", str(self.state_dir), "--vault-port", str(self.ports.vault))
        await self.ctl("bootstrap", *vault)
        await self.ctl("secret", "ha-token", *vault, stdin=token + "\n")

    async def wait_ports_free(self, within: float = 120) -> float:
        """Until our ports bind again without SO_REUSEADDR, as ``rubyctl up`` checks them
        (sockets in TIME_WAIT after bootstrap); seconds waited."""
        start = time.monotonic()
        ports = [self.ports.vault, self.ports.vault + 1, self.ports.nats, self.ports.http]
        ports.append(self.ports.gateway)
        while not all(_bindable(p) for p in ports):
            if time.monotonic() - start > within:
                raise RuntimeError(f"ports {ports} stayed busy for {within:.0f} s")
            await asyncio.sleep(0.5)
        return time.monotonic() - start

    async def start(self) -> None:
        """Start ``rubyctl up`` and wait until it says Ruby Core is up; `PortsBusyError` if it
        refused a port as in use, RuntimeError if it did not come up otherwise."""
        self.events, self.tail, self.up_at, self.ended = [], [], None, asyncio.Event()
        self.process = await asyncio.create_subprocess_exec(
            self.rubyctl,
            "up",
            "--quiet",
            *("--state-dir", str(self.state_dir)),
            *("--nats-port", str(self.ports.nats), "--http-port", str(self.ports.http)),
            *("--vault-port", str(self.ports.vault), "--gateway-port", str(self.ports.gateway)),
            *("--rules", str(self.rules_dir), "--ha-url", self.ha_url),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C handling stops it, by PID, in order
        )
        self._reader = asyncio.create_task(self._read(), name="rubyctl-up-reader")
        deadline = time.monotonic() + UP_WITHIN
        while self.up_at is None:
            if self.stopped:
                if any("address already in use" in line for line in self.tail):
                    raise PortsBusyError(self.last_lines(2))
                raise RuntimeError(f"rubyctl up stopped while starting: {self.last_lines()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rubyctl up was not up within {UP_WITHIN:.0f} s")
            await asyncio.sleep(0.1)

    async def _read(self) -> None:
        if self.process is None or self.process.stdout is None:
            raise RuntimeError("rubyctl up is not started")
        with (self.state_dir / "chaos-up.log").open("a", encoding="utf-8") as log:
            while line := (await self.process.stdout.readline()).decode(errors="replace"):
                log.write(line)
                self._understand(time.time(), line.rstrip("\n"))
        await self.process.wait()
        self.ended.set()

    def _understand(self, at: float, line: str) -> None:
        self.tail = [*self.tail[-29:], line]
        said = understand(line)
        if said == UP:
            self.up_at = at
        elif said is not None:
            kind, what, pid = said
            self.events.append(UpEvent(at, kind, what, pid))

    @property
    def stopped(self) -> bool:
        """Whether ``rubyctl up`` has exited (and its output is read to the end)."""
        return self.ended.is_set()

    async def running_until(self, moment: float) -> bool:
        """Wait until the wall-clock ``moment`` or until the stack stops; whether it runs."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), max(0.0, moment - time.time()))
        return not self.stopped

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def last_lines(self, n: int = 8) -> str:
        return " / ".join(self.tail[-n:]) or "(no output)"

    def pid_of(self, kind: str) -> int | None:
        """The current PID of ``kind``, from its pid file (else up's console), if it is ours."""
        pid = None
        for name in NAMES[kind]:
            path = self.state_dir / "run" / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text().strip())
                break
        if pid is None:
            said = [e.pid for e in self.events if e.kind == kind and e.pid is not None]
            pid = said[-1] if said else None
        return pid if pid is not None and pid in self._descendants() else None

    def _descendants(self) -> set[int]:
        if self.process is None or self.stopped:
            return set()
        try:
            return {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}
        except psutil.Error:
            return set()

    def kill(self, kind: str) -> tuple[int | None, float]:
        """``kill -9`` the process of ``kind``; (its PID or None if there was none, when)."""
        pid = self.pid_of(kind)
        at = time.time()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return None, at
        return pid, at

    async def wait_back(self, kind: str, since: float, within: float) -> float | None:
        """When ``kind`` was back after a kill at ``since``: up's ``<name> ready`` line (for
        nats-server: NATS greets a client and the gateway's /readyz says ready, or up's line).
        None if not within ``within`` seconds, or if the stack stopped."""
        deadline = time.monotonic() + within
        nats_back: float | None = None
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline and not self.stopped:
                ready = [e.at for e in self.events if e.kind == kind and e.what == "ready"]
                if ready and ready[-1] > since:
                    return min(at for at in ready if at > since)
                if kind == "nats-server":
                    if nats_back is None and await self._nats_greets():
                        nats_back = time.time()
                    if nats_back is not None and await self._gateway_ready(http):
                        return time.time()
                await asyncio.sleep(0.05)
        return None

    async def _nats_greets(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.ports.nats), 0.5
            )
        except (OSError, TimeoutError):
            return False
        try:
            return (await asyncio.wait_for(reader.readline(), 0.5)).startswith(b"INFO ")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def _gateway_ready(self, http: aiohttp.ClientSession) -> bool:
        url = f"http://127.0.0.1:{self.ports.gateway}/readyz"
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as reply:
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def restarts_between(self, start: float, end: float) -> list[str]:
        """``name restarted (pid N)`` for each restart up reported in [start, end]."""
        return [
            f"{e.kind} restarted (pid {e.pid})"
            for e in self.events
            if e.what == "restarted" and start <= e.at <= end
        ]

    async def stop(self, within: float = 150) -> str:
        """SIGTERM to ``rubyctl up`` (it stops the rest); SIGKILL to it and to what it had
        started if it has not ended within ``within`` seconds. How it ended."""
        if self.process is None:
            return "not started"
        if self.stopped:
            return f"had stopped (exit code {self.process.returncode})"
        left = self._descendants()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            for pid in [self.process.pid, *left]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await self.process.wait()
            return f"killed after {within:.0f} s"
        if self._reader is not None:
            await self._reader
        return f"stopped (exit code {self.process.returncode})"
