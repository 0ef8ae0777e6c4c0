"""`rubyctl up` (what `make run` runs): OpenBao, bootstrap, nats-server (TLS + NKEY) with the
topology applied as the operator; stops everything on Ctrl-C; a second start reuses it all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruby_ctl.operator import connect_operator, operator_settings
from ruby_natsx.apply import Action, apply_topology
from ruby_natsx.connection import NatsRefusedError, NatsSettings, connect
from ruby_natsx.permissions import IDENTITIES
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, topology

URL = r"listening on (tls://127\.0\.0\.1:\d+)"


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
                "--vault-port",
                "0",
                "--ha-port",
                "0",
                "--gateway-port",
                "0",
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

    def keys(self) -> dict[str, str]:
        """The NKEY public key printed for each identity."""
        return {i: self.find(rf"identity {i}: nkey (U[A-Z2-7]{{55}})").group(1) for i in IDENTITIES}

    def operator_env(self, state_dir: Path) -> dict[str, str]:
        return {
            "RUBY_STATE_DIR": str(state_dir),
            "RUBY_NATS_URL": self.find(URL).group(1),
            "RUBY_VAULT_ADDR": self.find(r"OpenBao pid \d+ on (http://127\.0\.0\.1:\d+)").group(1),
        }

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        self.lines.extend(out.splitlines())
        return self.proc.returncode

    def kill(self) -> None:
        """Stop it the way a user does (Ctrl-C), so its children stop too; SIGKILL last."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
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


async def test_up_runs_the_secure_stack_and_a_second_start_reuses_it(
    tmp_path: Path, start_up: type[Up]
) -> None:
    state = tmp_path / "state"
    first = start_up(state)
    first.read_until("Ruby Core is up")
    url = first.find(URL).group(1)
    nats_pid = int(first.find(r"nats-server pid (\d+)").group(1))
    bao_pid = int(
        first.find(r"OpenBao pid (\d+) on http://127\.0\.0\.1:\d+ \(initialised").group(1)
    )
    assert first.find(r"bootstrap: \d+ changes")
    assert first.find(r"topology applied as operator: 11 created, 0 updated, 0 unchanged")
    keys = first.keys()

    with pytest.raises(NatsRefusedError):  # no anonymous client, not even on loopback
        await connect(NatsSettings(url=url, name="anonymous", ca_file=state / "pki" / "ca.pem"))
    nc = await connect_operator(operator_settings(first.operator_env(state)), name="test")
    js = nc.jetstream()
    topo = topology(Subjects())
    # Every object exists with exactly the declared configuration: applying changes nothing.
    assert {c.action for c in await apply_topology(js, topo)} == {Action.UNCHANGED}
    marker = Subjects().ha_state("sensor.test_marker")  # no entity of the demo home
    await js.publish(marker, b"kept across restarts")
    await nc.close()

    # The services run too: the demo home and the gateway, ready.
    readyz = first.find(r"gateway ready: (http://127\.0\.0\.1:\d+/readyz)").group(1)
    gateway_pid = int(first.find(r"gateway pid (\d+) started").group(1))
    home_pid = int(first.find(r"demo home \(ruby-hasim\) pid (\d+) started").group(1))
    assert readyz

    assert first.interrupt() == 0
    assert not _alive(nats_pid), "nats-server outlived rubyctl up"
    assert not _alive(bao_pid), "OpenBao outlived rubyctl up"
    assert not _alive(gateway_pid), "the gateway outlived rubyctl up"
    assert not _alive(home_pid), "the demo home outlived rubyctl up"
    assert first.find(r"gateway stopped \(exit code 0\)")
    assert first.find(r"nats-server stopped \(exit code 0\)")
    assert first.find(r"OpenBao stopped \(exit code 0\)")

    # The second start reuses the state: same identities, nothing to create, the message kept.
    second = start_up(state)
    second.read_until("Ruby Core is up")
    assert second.find(r"OpenBao pid \d+ on http://127\.0\.0\.1:\d+ \(unsealed;")
    assert second.find(r"bootstrap: nothing changed")
    assert second.keys() == keys
    assert second.find(r"topology applied as operator: 0 created, 0 updated, 11 unchanged")
    nc = await connect_operator(operator_settings(second.operator_env(state)), name="test")
    kept = await nc.jetstream().get_last_msg(topo.stream(EVENTS).name, marker)
    assert kept.data == b"kept across restarts"
    await nc.close()
    assert second.interrupt() == 0
    printed = "\n".join(first.lines + second.lines)
    root_token = json.loads((state / "openbao" / "init.json").read_text())["root_token"]
    assert root_token not in printed
    assert re.search(r"S[UAONCX][A-Z2-7]{55}", printed) is None, "a seed was printed"

    # `rubyctl bootstrap` on the bootstrapped installation: nothing changed.
    again = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "ruby_ctl",
            "bootstrap",
            "--state-dir",
            str(state),
            "--vault-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert lines[-1] == "rubyctl bootstrap: nothing changed"
    assert "rubyctl bootstrap: OpenBao stopped (exit code 0)" in lines
    for identity, key in keys.items():
        assert f"rubyctl bootstrap: identity {identity}: nkey {key}" in lines
    started = re.search(r"local OpenBao from .* \(pid (\d+),", again.stdout)
    assert started is not None
    assert not _alive(int(started.group(1))), "bootstrap left its OpenBao running"


def test_up_says_why_when_nats_cannot_start(tmp_path: Path, start_up: type[Up]) -> None:
    first = start_up(tmp_path / "a")
    first.read_until("Ruby Core is up")
    port = first.find(r"listening on tls://127\.0\.0\.1:(\d+)").group(1)
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
            "--vault-port",
            "0",
            "--ha-port",
            "0",
            "--gateway-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert clash.returncode == 1
    assert "nats-server did not start" in clash.stdout
    assert "address already in use" in clash.stdout
    assert "OpenBao pid" not in clash.stdout, "it should fail before starting anything"
    assert not (tmp_path / "b" / "openbao").exists()
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
    assert "RUBY_VAULT_PORT" in out
