"""`rubyctl up --reload` (ADR-0010): a change of a service's Python source restarts that
service, a change of a shared package restarts them all, nats-server and OpenBao never."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ruby_ctl.testing import UpProcess, porch_rules
from ruby_ctl.up_reload import EVERY_SERVICE, affected, package_dir, sources


def test_each_package_restarts_the_services_that_run_it() -> None:
    fake = {name: Path("/src") / name for name in ("ruby_engine", "ruby_gateway", "ruby_natsx")}
    watched, missing = sources(["audit", "gateway", "engine"], fake.get)
    assert watched == {
        Path("/src/ruby_engine"): ("engine",),
        Path("/src/ruby_gateway"): ("gateway",),
        Path("/src/ruby_natsx"): EVERY_SERVICE,
    }
    assert "ruby_audit_sink" in missing  # not found as this checkout's source: said, not watched
    assert "ruby_hasim" not in missing  # no demo home running: not wanted
    assert affected([Path("/src/ruby_engine/engine.py")], watched) == ["engine"]
    assert affected(
        [Path("/src/ruby_natsx/runner.py"), Path("/src/ruby_engine/x.py")], watched
    ) == [
        "audit",
        "gateway",
        "engine",
    ]
    assert affected([Path("/elsewhere/x.py")], watched) == []
    # This checkout's packages are its source (an editable install), not a wheel's copy.
    root = Path(__file__).resolve().parents[3]
    assert package_dir("ruby_engine") == root / "services" / "engine" / "src" / "ruby_engine"


def test_a_source_change_restarts_its_service_and_nothing_else(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(tmp_path / "state", porch_rules(tmp_path), "--reload")
    up.read_until("Ruby Core is up")
    up.read_until(r"--reload: watching \d+ source folders")
    before = up.pids()
    source = package_dir("ruby_engine")
    assert source is not None
    os.utime(
        source / "__init__.py"
    )  # what an editor's save does to the file's time; its content is unchanged
    up.read_until(r"source changed \(__init__\.py\): restarting engine$")
    up.read_until(r"engine stopped for a code change \(exit code 0\); restarting$")
    line = up.read_until(r"engine restarted \(pid \d+\)$")
    match = re.search(r"pid (\d+)", line)
    assert match is not None
    up.read_until(r"engine ready$")
    after = up.pids()
    assert after["engine"] == int(match.group(1)) != before["engine"]
    assert {k: v for k, v in after.items() if k != "engine"} == {
        k: v for k, v in before.items() if k != "engine"
    }  # nats-server, OpenBao, the gateway and the audit sink untouched
    assert not [line for line in up.lines if "exited unexpectedly" in line]
    assert up.interrupt() == 0
