"""Keeping `rubyctl up`'s processes running: restart what dies, with backoff, within limits.

Each supervised process (`Supervised`) is watched by a task of its own. When it exits, the
task says so (its name, exit code or signal, its last lines), waits the backoff delay, starts
it again, writes its PID file, says ``<name> restarted (pid N)``, reports the restart (the
``on_restart`` callback: `rubyctl up` audits it) and waits until it reports ready again
(``<name> ready``, the same line as at the first start). A process that dies again meanwhile
is simply the next crash. When one process has crashed ``max_crashes`` times within
``window`` seconds, supervision gives up and `Supervisor.run` returns the reason; the caller
stops everything (ADR-0029).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ruby_ctl.children import Console, exit_text

T = TypeVar("T")

POLL = 0.1
"""Seconds between two looks at whether a process still runs."""


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a process that died, and when to give up."""

    first_delay: float = 0.1
    """Seconds before the first restart: a killed service is back at once."""
    factor: float = 2.0
    """Each further restart in a row waits this many times longer..."""
    max_delay: float = 5.0
    """...but never longer than this."""
    stable_after: float = 30.0
    """A process that ran this long before dying starts over from ``first_delay``."""
    max_crashes: int = 5
    """This many crashes of one process..."""
    window: float = 60.0
    """...within this many seconds stop the stack."""

    def delay(self, streak: int) -> float:
        """The wait before the restart that follows ``streak`` restarts in a row."""
        return min(self.first_delay * self.factor**streak, self.max_delay)


class RestartError(RuntimeError):
    """A process could not be started again (said why); counts as one more crash."""


@dataclass(frozen=True)
class Supervised:
    """One process as the supervisor sees it; the callables are its only handles on it."""

    name: str
    """Its name in ``rubyctl up``'s lines and its PID file (``<name>.pid``)."""
    exit_code: Callable[[], int | None]
    """None while it runs; its exit code (negative: the signal) once it has exited."""
    pid: Callable[[], int | None]
    restart: Callable[[], Awaitable[None]]
    """Start it again; raise `RestartError` when it cannot be. Never cancelled half-way."""
    tail: Callable[[], Awaitable[Sequence[str]]]
    """Its last lines of output, once it has exited."""
    ready: Callable[[datetime], Awaitable[bool]]
    """Whether it is ready again after a restart begun at the given time; never raises."""
    ready_line: str
    """What is said once it is ready: ``<name> ready`` and, maybe, where."""


OnRestart = Callable[[Supervised, int | None, int], Awaitable[None]]
"""Told of each restart: the process, the exit code of the run that ended, its new PID."""


class PidFiles:
    """``<dir>/<name>.pid``: the PID of each running process, for tools that watch or kill
    them (the chaos benchmark). Each file is replaced atomically, never seen half-written."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.pid"

    def write(self, name: str, pid: int | None) -> None:
        if pid is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.pid.tmp"
        tmp.write_text(f"{pid}\n")
        os.replace(tmp, self.path(name))

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every PID file (left by a `rubyctl up` that was killed)."""
        for stale in self.directory.glob("*.pid"):
            stale.unlink(missing_ok=True)


class Supervisor:
    """Restarts the processes it watches until one crashes too often, or it is cancelled."""

    def __init__(
        self,
        processes: Sequence[Supervised],
        console: Console,
        pid_files: PidFiles,
        on_restart: OnRestart,
        *,
        policy: RestartPolicy | None = None,
        ready_within: float = 60.0,
    ) -> None:
        self._processes = processes
        self._console = console
        self._pid_files = pid_files
        self._on_restart = on_restart
        self.policy = policy or RestartPolicy()
        self._ready_within = ready_within
        self._reloading: set[str] = set()

    def reload(self, name: str) -> bool:
        """Stop ``name`` with SIGTERM for a code change (``rubyctl up --reload``): it is
        started again at once, without counting as a crash. False if it is not running."""
        process = next((p for p in self._processes if p.name == name), None)
        pid = None if process is None or process.exit_code() is not None else process.pid()
        if pid is None:
            return False
        self._reloading.add(name)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self._reloading.discard(name)
            return False
        return True

    async def run(self) -> str:
        """Watch every process; return why supervision gave up. Cancelling it stops the
        watching (a restart under way is finished first) and leaves the processes running."""
        tasks = [
            asyncio.create_task(self._watch(p), name=f"watch {p.name}") for p in self._processes
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, process: Supervised) -> str:
        loop = asyncio.get_running_loop()
        say = self._console.say
        crashes: deque[float] = deque()
        streak = 0
        started = loop.time()
        while True:
            code = await _exited(process)
            if process.name in self._reloading:  # stopped by `reload`: not a crash
                self._reloading.discard(process.name)
                say(f"{process.name} stopped for a code change ({exit_text(code)}); restarting")
                since = datetime.now(UTC)
                try:
                    await _whole(process.restart())
                except RestartError as exc:
                    code, tail = None, await process.tail()
                    ended = f"did not start again after a code change ({exc})"
                else:
                    started = loop.time()
                    await self._restarted(process, code, since)
                    continue
            else:
                ended = f"exited unexpectedly ({exit_text(code)})"
                tail = await process.tail()
            if loop.time() - started >= self.policy.stable_after:
                streak = 0
            while True:  # until it is started again, or has crashed too often
                now = loop.time()
                crashes.append(now)
                while crashes and crashes[0] < now - self.policy.window:
                    crashes.popleft()
                if len(crashes) >= self.policy.max_crashes:
                    say(f"{process.name} {ended}; its last lines:")
                    self._console.say_tail(process.name, tail)
                    return (
                        f"{process.name} crashed {len(crashes)} times within "
                        f"{self.policy.window:g}s"
                    )
                delay = self.policy.delay(streak)
                streak += 1
                say(f"{process.name} {ended}; restarting in {delay:g}s; its last lines:")
                self._console.say_tail(process.name, tail)
                await asyncio.sleep(delay)
                since = datetime.now(UTC)
                try:
                    await _whole(process.restart())
                except RestartError as exc:
                    ended, tail = f"did not start again ({exc})", await process.tail()
                    continue
                break
            started = loop.time()
            await self._restarted(process, code, since)

    async def _restarted(self, process: Supervised, code: int | None, since: datetime) -> None:
        pid = process.pid()
        self._pid_files.write(process.name, pid)
        self._console.say(f"{process.name} restarted (pid {pid})")
        await self._on_restart(process, code, pid or 0)
        await self._wait_ready(process, since)

    async def _wait_ready(self, process: Supervised, since: datetime) -> None:
        """Say ``ready_line`` once it is ready; return early (silently) if it exits again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_within
        while process.exit_code() is None:
            if await process.ready(since):
                self._console.say(process.ready_line)
                return
            if loop.time() > deadline:
                self._console.say(
                    f"{process.name} not ready {self._ready_within:g}s after its restart; "
                    "still watching it"
                )
                return
            await asyncio.sleep(0.2)


async def _exited(process: Supervised) -> int | None:
    # A Popen started outside asyncio has nothing to await; polling its exit is the way.
    while (code := process.exit_code()) is None:  # noqa: ASYNC110
        await asyncio.sleep(POLL)
    return code


async def _whole(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when cancelled meanwhile (then re-raise the cancel): a
    process half-started in a thread is never left behind by a stop."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
