"""The compose layout without containers: `rubyctl up --servers-only` runs the servers and the
demo home, and each service runs on its own under `rubyctl live`, restarted when its source
changes (ADR-0010, ADR-0016). The compose files run exactly these two commands."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruby_ctl.testing import CommandProcess, UpProcess, porch_rules
from ruby_ctl.up_reload import package_dir


@pytest.fixture
def live_services() -> Iterator[list[CommandProcess]]:
    """The `rubyctl live` processes a test starts, each stopped (Ctrl-C) at its end."""
    started: list[CommandProcess] = []
    yield started
    for proc in reversed(started):
        proc.kill()


def test_services_run_beside_a_servers_only_stack_and_restart_on_a_change(
    tmp_path: Path, start_up: type[UpProcess], live_services: list[CommandProcess]
) -> None:
    rules = porch_rules(tmp_path)
    up = start_up(tmp_path / "state", rules, "--servers-only")
    up.read_until("the servers are up")
    ready_file = up.state_dir / "run" / "up.ready"
    assert ready_file.read_text().strip() == str(up.proc.pid)  # the stack's healthcheck
    assert set(up.pids()) == {"openbao", "nats-server", "hasim"}  # no service of its own
    home = up.find(r"demo home assistant \(simulator\) on (ws://\S+)").group(1)

    env = {**os.environ, **up.operator_env(), "RUBY_PREFIX": "ruby", "RUBY_LOG_LEVEL": "INFO"}
    for service, extra in (
        ("audit-sink", {}),
        ("gateway", {"RUBY_HA_URL": home, "RUBY_GATEWAY_HEALTH_PORT": "0"}),
        ("engine", {"RUBY_RULES_DIR": str(rules)}),
    ):
        live_services.append(CommandProcess("live", service, env={**env, **extra}))
    audit, gateway, engine = live_services
    audit.read_until('"audit sink running"')
    gateway.read_until('"gateway running"')
    engine.read_until('"engine running"')
    first = int(engine.last(r"rubyctl live: engine pid (\d+) started").group(1))

    source = package_dir("ruby_engine")
    assert source is not None
    os.utime(source / "__init__.py")  # an editor's save: same content, a new time
    engine.read_until(
        r"rubyctl live: source changed \(__init__\.py\): engine stopped \(exit code 0\); "
        "restarting"
    )
    engine.read_until('"engine running"')
    second = int(engine.last(r"rubyctl live: engine pid (\d+) started").group(1))
    assert second != first
    assert not [line for line in audit.lines + gateway.lines if "source changed" in line]

    for proc, name in zip(live_services, ("audit-sink", "gateway", "engine"), strict=True):
        assert proc.interrupt() == 0, "\n".join(proc.lines)
        assert f"rubyctl live: {name} stopped (exit code 0)" in proc.lines
    assert up.interrupt() == 0
    assert not ready_file.exists()


def test_a_service_that_exits_by_itself_ends_rubyctl_live_with_its_code(tmp_path: Path) -> None:
    # No NATS, no Vault: the audit sink cannot start, says why and exits with its own code,
    # and so does `rubyctl live`, for the container's restart policy to decide.
    env = {
        **os.environ,
        "RUBY_STATE_DIR": str(tmp_path),
        "RUBY_VAULT_ADDR": "http://127.0.0.1:9",
        "RUBY_VAULT_ATTEMPTS": "1",
    }
    live = CommandProcess("live", "audit-sink", env=env)
    code = live.wait()
    assert code != 0
    assert re.search(r"rubyctl live: audit-sink exited by itself \(exit code \d+\)", live.lines[-1])
    assert any("cannot start" in line for line in live.lines)
