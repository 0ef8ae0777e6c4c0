"""``rubyctl live SERVICE``: run one service and restart it when its Python source changes.

The development compose file runs each service in its own container this way, with the source
tree mounted (ADR-0010): the same packages restart it as under ``rubyctl up --reload`` (its own
package, or a shared one), the same way (SIGTERM, the service drains and exits, it starts
again at once). A stop signal is passed on to the service, and ``rubyctl live`` exits with the
service's exit code; a service that exits by itself ends it too, so the container's restart
policy, not this command, decides what a crash means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Final

from watchfiles import PythonFilter, awatch

from ruby_ctl import up_reload
from ruby_ctl.children import console_script, exit_text

PROGRAMS: Final = {
    "gateway": ("ruby-gateway", "gateway"),
    "engine": ("ruby-engine", "engine"),
    "audit-sink": ("ruby-audit-sink", "audit"),
}
"""Service name -> (its program, its process name in `up_reload.OWN`)."""
STOP_WITHIN: Final = 30.0
"""Seconds a service has to drain after SIGTERM before SIGKILL (as under ``rubyctl up``)."""


def say(line: str) -> None:
    print(f"rubyctl live: {line}", flush=True)


async def live(
    argv: list[str],
    watched: list[Path],
    *,
    name: str,
    report: Callable[[str], None] = say,
) -> int:
    """Run ``argv`` until a stop signal or until it exits by itself; restart it whenever a
    ``.py`` file under ``watched`` changes. Returns the service's last exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    changed: asyncio.Queue[list[str]] = asyncio.Queue()
    watching = asyncio.create_task(_watch(watched, changed, stop), name="watch sources")
    try:
        while True:
            proc = await asyncio.create_subprocess_exec(*argv)
            report(f"{name} pid {proc.pid} started")
            ended = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(stop.wait())
            change = asyncio.create_task(changed.get())
            await asyncio.wait({ended, stopping, change}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stopping, change):
                task.cancel()
            if ended.done():
                report(f"{name} exited by itself ({exit_text(ended.result())})")
                return _exit_status(ended.result())
            code = await _stop(proc, ended)
            if stop.is_set():
                report(f"{name} stopped ({exit_text(code)})")
                return _exit_status(code)
            files = ", ".join(sorted({Path(p).name for p in change.result()}))
            report(f"source changed ({files}): {name} stopped ({exit_text(code)}); restarting")
    finally:
        stop.set()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


async def _stop(proc: asyncio.subprocess.Process, ended: asyncio.Task[int]) -> int:
    """SIGTERM by PID, `STOP_WITHIN` seconds to drain, then SIGKILL; the exit code."""
    with contextlib.suppress(ProcessLookupError):  # it may have ended a moment ago
        proc.terminate()
    try:
        return await asyncio.wait_for(asyncio.shield(ended), STOP_WITHIN)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await ended


def _exit_status(code: int | None) -> int:
    """The shell's status for a child's exit code: 128 + N for a child ended by signal N."""
    if code is None:
        return 0
    return 128 - code if code < 0 else code


async def _watch(
    directories: list[Path], changed: asyncio.Queue[list[str]], stop: asyncio.Event
) -> None:
    if not directories:
        return
    async for changes in awatch(
        *directories,
        watch_filter=PythonFilter(),
        debounce=up_reload.DEBOUNCE_MS,
        stop_event=stop,
    ):
        changed.put_nowait([p for _, p in changes])


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "live",
        help="run one service, restarting it when its Python source changes (compose dev)",
        description=(
            "Run one service in the foreground and restart it (SIGTERM, then start again) when "
            "a .py file of its own package or of a shared package (schemas, natsx, runtime, "
            "rules, audit store) changes in this checkout: what the development compose file "
            "runs in each service's container, with the source tree mounted (ADR-0010). "
            "SIGTERM or Ctrl-C stops the service and this command with the service's exit "
            "code; a service that exits by itself ends this command too, so a crash is the "
            "container's restart policy's to handle. The service reads its usual RUBY_* "
            "variables."
        ),
    )
    parser.add_argument("service", choices=sorted(PROGRAMS), help="the service to run")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    program, process = PROGRAMS[args.service]
    watched, missing = up_reload.sources([process])
    if missing:
        say(f"not watching {', '.join(missing)} (installed, not this checkout's source)")
    shown = ", ".join(str(d) for d in sorted(watched)) or "nothing"
    say(f"running {program}; watching {shown}")
    return asyncio.run(live([console_script(program)], sorted(watched), name=args.service))
