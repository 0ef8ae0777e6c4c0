"""AUDIT's configuration is locked: `rubyctl up` refuses, with the break-glass procedure, to
run against an AUDIT that differs from its declaration, and `rubyctl up --audit-break-glass`
applies the declaration, audited, and leaves the authorization locked again (ADR-0005)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.server import NatsServer, ServerConfig
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT, topology

AUDIT_NAME = topology(Subjects()).stream(AUDIT).name


def up(state: Path, rules: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruby_ctl", "up", "--state-dir", str(state), "--rules",
         str(rules), "--nats-port", "0", "--http-port", "off", "--vault-port", "0",
         "--ha-port", "0", "--gateway-port", "0", *flags],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


async def on_the_store(state: Path, description: str | None = None) -> tuple[str, list[str]]:
    """Open the installation's JetStream store with a bare nats-server (what someone with the
    files could do); set AUDIT's description if asked; return it and the audit reasons."""
    server = NatsServer(ServerConfig(state_dir=state / "nats"))
    server.start()
    try:
        nc = await connect(NatsSettings(url=server.url, name="test-store"))
        try:
            js = nc.jetstream()
            config = (await js.stream_info(AUDIT_NAME)).config
            if description is not None:
                config.description = description
                await js.update_stream(config)
            info = await js.stream_info(AUDIT_NAME)
            reasons = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                record = json.loads((await js.get_msg(AUDIT_NAME, seq)).data or b"{}")
                reasons.append(str(record.get("data", {}).get("reason", "")))
            return str(info.config.description), reasons
        finally:
            await nc.close()
    finally:
        server.stop()


async def test_a_changed_audit_stops_up_until_the_glass_is_broken(tmp_path: Path) -> None:
    state, rules = tmp_path / "state", tmp_path / "rules"
    rules.mkdir()
    # A fresh install through the break-glass path: everything is created, then locked.
    fresh = await asyncio.to_thread(up, state, rules, "--audit-break-glass")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert f"stream {AUDIT_NAME}: created" in fresh.stdout
    assert "AUDIT break-glass done; the authorization is locked again" in fresh.stdout
    declared, _ = await on_the_store(state)
    locked = (state / "nats" / "authorization.conf").read_text()
    assert f'"$JS.API.STREAM.UPDATE.{AUDIT_NAME}"' in locked

    # Someone with the store's files changes AUDIT: `rubyctl up` refuses, saying how to proceed.
    await on_the_store(state, description="changed behind our back")
    refused = await asyncio.to_thread(up, state, rules)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert f"cannot apply the declared topology: stream '{AUDIT_NAME}' differs" in refused.stdout
    assert "description: 'changed behind our back' ->" in refused.stdout
    assert "rubyctl up --audit-break-glass" in refused.stdout
    assert "Ruby Core is up" not in refused.stdout
    assert (state / "nats" / "authorization.conf").read_text() == locked

    # Breaking the glass applies the declaration, records it, and locks again.
    glass = await asyncio.to_thread(up, state, rules, "--audit-break-glass")
    assert glass.returncode == 0, glass.stdout + glass.stderr
    assert f"stream {AUDIT_NAME}: updated (description: 'changed behind our back'" in glass.stdout
    assert "written (AUDIT break-glass: the operator may update AUDIT)" in glass.stdout
    assert "written (locked)" in glass.stdout
    assert (state / "nats" / "authorization.conf").read_text() == locked
    description, reasons = await on_the_store(state)
    assert description == declared
    for said in ("(AUDIT break-glass: the operator may update AUDIT)", "AUDIT break-glass: applied",
                 "written (locked)"):  # fmt: skip
        assert sum(said in reason for reason in reasons) == 2, (said, reasons)  # both runs
