"""The supervisor on its own, with real short-lived processes: backoff, the crash window, the
reset after a stable run, failed restarts, PID files (ADR-0029)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ruby_ctl.children import Child, Console
from ruby_ctl.supervise import PidFiles, RestartError, RestartPolicy, Supervised, Supervisor
from ruby_natsx.testing import eventually

FAST = RestartPolicy(first_delay=0.01, factor=2.0, max_delay=0.04, stable_after=60, window=60)


def watched(child: Child, *, fail_restarts: int = 0) -> Supervised:
    """``child`` as the supervisor sees it; its first ``fail_restarts`` restarts fail."""
    failures = [fail_restarts]

    async def restart() -> None:
        if failures[0]:
            failures[0] -= 1
            raise RestartError("the port is taken")
        child.start()

    async def tail() -> Sequence[str]:
        await asyncio.to_thread(child.settle)
        return child.tail()

    async def ready(_since: datetime) -> bool:
        return True

    return Supervised(
        child.name, child.exit_code, lambda: child.pid, restart, tail, ready, f"{child.name} ready"
    )


def python(tmp_path: Path, name: str, code: str) -> Child:
    return Child(name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log")


class Recorder:
    def __init__(self) -> None:
        self.restarts: list[tuple[str, int | None, int]] = []

    async def __call__(self, process: Supervised, code: int | None, pid: int) -> None:
        self.restarts.append((process.name, code, pid))


async def test_a_process_that_exits_at_once_is_restarted_with_backoff_then_given_up(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    console = Console("sup", out)
    child = python(tmp_path, "broken", "print('no settings'); raise SystemExit(78)")
    child.start()
    pids = PidFiles(tmp_path / "run")
    recorder = Recorder()
    supervisor = Supervisor([watched(child)], console, pids, recorder, policy=FAST)
    reason = await asyncio.wait_for(supervisor.run(), 30)
    console.close()
    lines = out.getvalue().splitlines()
    assert reason == "broken crashed 5 times within 60s"
    delays = [m.group(1) for line in lines if (m := re.search(r"restarting in (\S+)s;", line))]
    assert delays == ["0.01", "0.02", "0.04", "0.04"], "doubling, capped"
    assert (
        "sup: broken exited unexpectedly (exit code 78); restarting in 0.01s; its last lines:"
        in lines
    )
    assert "sup:   broken | no settings" in lines
    assert lines[-2:] == [
        "sup: broken exited unexpectedly (exit code 78); its last lines:",
        "sup:   broken | no settings",
    ]
    restarted = [
        int(m.group(1))
        for line in lines
        if (m := re.fullmatch(r"sup: broken restarted \(pid (\d+)\)", line))
    ]
    assert [(name, code) for name, code, _ in recorder.restarts] == [("broken", 78)] * 4
    assert [pid for _, _, pid in recorder.restarts] == restarted
    assert pids.path("broken").read_text() == f"{restarted[-1]}\n"


async def test_a_stable_run_starts_the_backoff_over_and_failed_restarts_count(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    console = Console("sup", out)
    child = python(tmp_path, "sleeper", "import time; time.sleep(60)")
    child.start()
    policy = RestartPolicy(first_delay=0.01, max_delay=1, stable_after=0.3, max_crashes=4)
    recorder = Recorder()
    process = watched(child, fail_restarts=1)
    supervisor = Supervisor([process], console, PidFiles(tmp_path / "run"), recorder, policy=policy)
    supervising = asyncio.create_task(supervisor.run())
    try:
        for kills in range(1, 3):  # each run lasts longer than stable_after before its kill
            await asyncio.sleep(0.4)  # not a wait for something: the run must last that long
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            await eventually(lambda n=kills: len(recorder.restarts) == n, within=10)
        assert not supervising.done(), "4 crashes (one a failed restart) are not 4 in a row yet"
    finally:
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        child.stop(5)
    console.close()
    lines = out.getvalue().splitlines()
    delays = [m.group(1) for line in lines if (m := re.search(r"restarting in (\S+)s;", line))]
    # Kill 1: 0.01, its restart fails (a crash too): 0.02; kill 2 after a stable run: 0.01 again.
    assert delays == ["0.01", "0.02", "0.01"], lines
    assert (
        "sup: sleeper did not start again (the port is taken); restarting in 0.02s; its last lines:"
        in lines
    )
    assert [code for _, code, _ in recorder.restarts] == [-9, -9]
    assert lines.count("sup: sleeper ready") == 2


async def test_a_reload_restarts_at_once_and_never_counts_as_a_crash(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console("sup", out)
    child = python(tmp_path, "engine", "import time; time.sleep(600)")
    child.start()
    pids = PidFiles(tmp_path / "run")
    recorder = Recorder()
    one_crash_is_too_many = RestartPolicy(first_delay=5, max_crashes=1, window=60)
    supervisor = Supervisor([watched(child)], console, pids, recorder, policy=one_crash_is_too_many)
    supervising = asyncio.create_task(supervisor.run())
    try:
        for n in range(1, 4):  # three code changes in a row, well within the crash window
            before = child.pid
            assert supervisor.reload("engine")
            await eventually(lambda n=n: len(recorder.restarts) == n, message=f"reload {n}")
            assert child.pid != before
            assert not supervising.done()
        assert not supervisor.reload("nobody")
    finally:
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        child.stop()
    console.close()
    lines = out.getvalue().splitlines()
    stopped = [line for line in lines if "stopped for a code change" in line]
    assert (
        stopped
        == ["sup: engine stopped for a code change (exit code -15, SIGTERM); restarting"] * 3
    )
    assert not any("exited unexpectedly" in line for line in lines)
    assert [code for _, code, _ in recorder.restarts] == [-signal.SIGTERM] * 3
    assert pids.path("engine").read_text().strip() == str(child.pid)
