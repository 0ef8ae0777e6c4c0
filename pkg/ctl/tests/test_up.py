"""`rubyctl up` (what `make run` runs): starts nats-server with the topology, stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruby_natsx.apply import Action, apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, topology


class Up:
    """A running `rubyctl up` process and the lines it printed."""

    def __init__(self, state_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ruby_ctl",
                "up",
                "--state-dir",
                str(state_dir),
                "--nats-port",
                "0",
                "--http-port",
                "off",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []

    def read_until(self, marker: str, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if marker in line:
                return
        pytest.fail(f"{marker!r} never printed; output:\n" + "\n".join(self.lines))

    def find(self, pattern: str) -> re.Match[str]:
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matches {pattern!r}:\n" + "\n".join(self.lines))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        self.lines.extend(out.splitlines())
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[type[Up]]:
    started: list[Up] = []

    class Tracked(Up):
        def __init__(self, state_dir: Path) -> None:
            super().__init__(state_dir)
            started.append(self)

    yield Tracked
    for up in started:
        up.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_up_runs_nats_with_the_topology_and_stops_on_ctrl_c(
    tmp_path: Path, start_up: type[Up]
) -> None:
    state = tmp_path / "state"
    first = start_up(state)
    first.read_until("Ruby Core is up")
    url = first.find(r"listening on (nats://127\.0\.0\.1:\d+)").group(1)
    pid = int(first.find(r"nats-server pid (\d+)").group(1))
    assert first.find(r"topology applied: 11 created, 0 updated, 0 unchanged")

    nc = await connect(NatsSettings(url=url, name="test"))
    js = nc.jetstream()
    topo = topology(Subjects())
    # Every object exists with exactly the declared configuration: applying changes nothing.
    assert {c.action for c in await apply_topology(js, topo)} == {Action.UNCHANGED}
    await js.publish(Subjects().ha_state("light.kitchen"), b"{}")
    await nc.close()

    assert first.interrupt() == 0
    assert not _alive(pid), "nats-server outlived rubyctl up"
    assert first.find(r"nats-server stopped \(exit code 0\)")

    # The second start reuses the state: nothing to create, the message is still there.
    second = start_up(state)
    second.read_until("Ruby Core is up")
    assert second.find(r"topology applied: 0 created, 0 updated, 11 unchanged")
    url = second.find(r"listening on (nats://127\.0\.0\.1:\d+)").group(1)
    nc = await connect(NatsSettings(url=url, name="test"))
    info = await nc.jetstream().stream_info(topo.stream(EVENTS).name)
    assert info.state.messages == 1
    await nc.close()
    assert second.interrupt() == 0


def test_up_says_why_when_nats_cannot_start(tmp_path: Path, start_up: type[Up]) -> None:
    first = start_up(tmp_path / "a")
    first.read_until("Ruby Core is up")
    port = first.find(r"listening on nats://127\.0\.0\.1:(\d+)").group(1)
    clash = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruby_ctl",
            "up",
            "--state-dir",
            str(tmp_path / "b"),
            "--nats-port",
            port,
            "--http-port",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert clash.returncode == 1
    assert "nats-server did not start" in clash.stdout
    assert "address already in use" in clash.stdout
    assert first.interrupt() == 0


def test_help_explains_up() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruby_ctl", "up", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Ctrl-C" in out
    assert "RUBY_NATS_PORT" in out
