"""What the chaos run understands of ``rubyctl up``'s console, and that it only ever kills a
process of its own ``rubyctl up``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import psutil
import pytest
from chaos.stack import UP, Ports, Stack, understand


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rubyctl up: gateway pid 12 started (log /x/gateway.log)", ("gateway", "started", 12)),
        (
            "rubyctl up: nats-server pid 5 listening on tls://127.0.0.1:1 (TLS)",
            ("nats-server", "started", 5),
        ),
        ("rubyctl up: audit restarted (pid 77)", ("audit_sink", "restarted", 77)),
        ("rubyctl up: nats-server restarted (pid 78)", ("nats-server", "restarted", 78)),
        ("rubyctl up: audit sink ready", ("audit_sink", "ready", None)),
        ("rubyctl up: audit ready", ("audit_sink", "ready", None)),
        ("rubyctl up: gateway ready: http://127.0.0.1:8081/readyz", ("gateway", "ready", None)),
        ("rubyctl up: engine ready", ("engine", "ready", None)),
        ("rubyctl up: Ruby Core is up. Press Ctrl-C to stop.", UP),
        ("rubyctl up:   nats-server | [18422] 2026/12/03 [INF] Server is ready", None),
        ("rubyctl up: OpenBao pid 3 on http://127.0.0.1:8200 (unsealed)", None),
        ("rubyctl up: engine stopped (exit code 1)", None),
        ('engine  | {"event": "engine ready"}', None),
    ],
)
def test_up_console_lines(line: str, expected: object) -> None:
    assert understand(line) == expected


async def test_only_a_descendant_of_our_own_up_is_ever_killed(tmp_path: Path) -> None:
    # A stand-in for `rubyctl up`: a shell with one child, as up has its services.
    up = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        f"{sys.executable} -c 'import time; time.sleep(60)' & echo $!; wait",
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert up.stdout is not None
    child = int(await up.stdout.readline())
    stack = Stack(tmp_path, Ports(1, 2, 3, 4), tmp_path, "ws://unused", "rubyctl", process=up)
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "gateway.pid").write_text(f"{child}\n")
        (tmp_path / "run" / "engine.pid").write_text(f"{os.getpid()}\n")  # not up's: this test
        (tmp_path / "run" / "audit.pid").write_text(f"{up.pid}\n")  # up itself, not its child
        assert stack.pid_of("gateway") == child
        assert stack.pid_of("engine") is None
        assert stack.pid_of("audit_sink") is None
        assert stack.pid_of("nats-server") is None  # no pid file, nothing said on the console
        assert stack.kill("engine")[0] is None
        pid, _ = stack.kill("gateway")
        assert pid == child
        assert await asyncio.wait_for(up.wait(), 10) == 0  # its `wait` returned: child gone
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    finally:
        for pid in (child, up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        await up.wait()


def test_the_home_chosen_for_ha_auto_real_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos import home

    monkeypatch.setattr(home, "real_ha_installed", lambda: False)
    assert home.choose_home("auto") == "sim"
    assert home.choose_home("sim") == "sim"
    with pytest.raises(home.HomeError, match="no Home Assistant installed"):
        home.choose_home("real")
    monkeypatch.setattr(home, "real_ha_installed", lambda: True)
    assert home.choose_home("auto") == "real"
