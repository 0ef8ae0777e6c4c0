"""The service processes ``rubyctl up`` runs beside the servers: started, watched, stopped.

Each child's output goes through a pipe to one reader thread, which writes every line to the
child's log file and hands it, prefixed with the child's name, to the `Console`. The reader
never waits for the console, so a slow or stuck terminal cannot stall a service. `wait_ready`
polls a readiness probe (`http_ok`, `status_ready`) while watching that no child has died.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TextIO

import aiohttp
from nats.js.kv import KeyValue

from ruby_natsx.server import stop_process
from ruby_natsx.status import status_ready as record_ready

PREFIX_WIDTH = 7
"""Width of the name before `` | `` on the console: ``hasim   | ...``, ``gateway | ...``."""
CONSOLE_BACKLOG = 10_000
"""Lines the console may fall behind before child output is left out of it (not the logs)."""
TAIL_LINES = 20
"""Last lines of each child kept in memory, to show when it dies."""


class Console:
    """Whole lines to stdout from any thread, in the order they were handed over.

    One writer thread, started on first use, owns the stream. `say` waits for room, so the
    caller's own lines are never lost; `echo` never waits: while the stream is more than
    ``backlog`` lines behind, echoed lines are dropped (a note counts them). A stream that
    fails (a closed pipe) is given up and later lines are discarded. `close` writes what is
    queued and stops the thread.
    """

    def __init__(
        self, own: str, stream: TextIO | None = None, backlog: int = CONSOLE_BACKLOG
    ) -> None:
        self._own = own
        self._stream = stream
        self._lines: queue.Queue[str | None] = queue.Queue(backlog)
        self._dropped = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def say(self, line: str) -> None:
        """One line of our own, after ``<own>: ``; waits for room."""
        self._start()
        self._lines.put(f"{self._own}: {line}")

    def say_tail(self, name: str, lines: Sequence[str]) -> None:
        """The last lines of a process, indented under what was just said."""
        for line in lines or ["(no output)"]:
            self.say(f"  {name} | {line}")

    def echo(self, line: str) -> None:
        """One line of a child's output; never waits (dropped if too far behind)."""
        self._start()
        with self._lock:
            try:
                if self._dropped:  # say where the gap is, once there is room again
                    self._lines.put_nowait(_gap(self._dropped))
                    self._dropped = 0
                self._lines.put_nowait(line)
            except queue.Full:
                self._dropped += 1

    def close(self) -> None:
        """Write out what is queued; stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            dropped, self._dropped = self._dropped, 0
        if thread is not None:
            if dropped:
                self._lines.put(_gap(dropped))
            self._lines.put(None)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="console", daemon=True)
                self._thread.start()

    def _write(self) -> None:
        stream = self._stream or sys.stdout
        broken = False
        while (line := self._lines.get()) is not None:
            if broken:
                continue
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: keep draining the queue
                broken = True


def _gap(dropped: int) -> str:
    return f"({dropped} lines of output not shown here: see the log files)"


@dataclass
class Child:
    """One child process; its output goes to ``log_path`` and, prefixed, to ``console``.

    ``console=None`` keeps the output to the log file only (``rubyctl up --quiet``).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    console: Console | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES), repr=False)
    _tail_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Start the process and the thread that drains its output until it exits. Again
        after it exited: a new process, appending to the same log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._tail_lock:
            self._tail.clear()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own console scripts
                list(self.argv),
                env=dict(self.env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        pipe = self.process.stdout
        if pipe is None:  # cannot happen with stdout=PIPE; keeps the types honest
            raise RuntimeError(f"{self.name}: no output pipe")
        self._reader = threading.Thread(
            target=self._drain, args=(pipe, log), name=self.name, daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """None while it runs (or before it started); then its exit code (negative: the
        signal that ended it)."""
        return None if self.process is None else self.process.poll()

    def report_exit(self, console: Console) -> None:
        """Say that it died, how, and its last lines."""
        self.settle()  # its last lines are read before they are shown
        code = self.process.returncode if self.process else None
        console.say(f"{self.name} exited unexpectedly ({exit_text(code)}); its last lines:")
        console.say_tail(self.name, self.tail())

    def tail(self) -> list[str]:
        """The last lines it wrote (at most ``TAIL_LINES``)."""
        with self._tail_lock:
            return list(self._tail)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM by PID, wait for a graceful exit, SIGKILL if it lingers; then its last
        lines are read. The exit code (negative: the signal that ended it)."""
        code = stop_process(self.process, timeout)
        self.settle()
        return code

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the output of an exited child is read to the end."""
        if self._reader is not None:
            self._reader.join(timeout)

    def _drain(self, pipe: IO[bytes], log: IO[bytes]) -> None:
        prefix = f"{self.name:<{PREFIX_WIDTH}} | "
        to_log = True
        with pipe, log:
            for raw in iter(pipe.readline, b""):
                if to_log:
                    try:
                        log.write(raw)
                        log.flush()
                    except OSError as exc:  # a full disk must not stall the child
                        to_log = False
                        if self.console is not None:
                            self.console.echo(f"{prefix}(log file not written: {exc})")
                text = raw.decode(errors="replace").rstrip("\r\n")
                with self._tail_lock:
                    self._tail.append(text)
                if self.console is not None:
                    self.console.echo(prefix + text)


def console_script(name: str) -> str:
    """A console script of this environment (``ruby-gateway``), beside the interpreter."""
    return str(Path(sys.executable).parent / name)


def exit_text(code: int | None) -> str:
    """``exit code 0``; ``exit code -9, SIGKILL`` for a process ended by a signal."""
    if code is None:
        return "not started"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"exit code {code}, {signal.Signals(-code).name}"
    return f"exit code {code}"


def file_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log file (none if it cannot be read)."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


Probe = Callable[[], Awaitable[bool]]
"""A readiness check: true once ready; never raises for "not yet"."""


async def wait_ready(
    console: Console, what: str, probe: Probe, watched: Sequence[Child], within: float
) -> bool:
    """Poll ``probe`` until true, then say ``what``. False, and said why, if a watched child
    exits first (its last lines) or ``within`` seconds pass (the last child's last lines)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for child in watched:
            if not child.alive():
                child.report_exit(console)
                return False
        if await probe():
            console.say(what)
            return True
        await asyncio.sleep(0.2)
    last = watched[-1]
    console.say(f"{last.name} not ready after {within:g}s; its last lines ({last.log_path}):")
    console.say_tail(last.name, last.tail())
    return False


def http_ok(http: aiohttp.ClientSession, url: str) -> Probe:
    """Ready when ``url`` answers 200 (the gateway's ``/readyz``)."""

    async def probe() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as response:
                return response.status == 200
        return False

    return probe


def status_ready(kv: KeyValue, key: str, since: datetime) -> Probe:
    """Ready when the status record ``key`` says ``ready`` and was written after ``since``
    (a record left by an earlier run does not count): the engine's, the audit sink's."""

    async def probe() -> bool:
        return await record_ready(kv, key, since)

    return probe
