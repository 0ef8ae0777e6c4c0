"""`rubyctl secret ha-token`: the token goes from stdin to Vault, never to the screen, audited;
on a fresh state directory it bootstraps first, and `rubyctl up` then uses the token."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from ruby_ctl.audit_spool import flush, spool_path
from ruby_ctl.openbao import free_port
from ruby_ctl.secret import OPERATOR_SOURCE, SOURCE_FIELD
from ruby_ctl.testing import Installation, UpProcess
from ruby_ctl.vault_admin import read_field
from ruby_hasim.testing import SimulatorFactory
from ruby_natsx.topology import AUDIT
from ruby_runtime.settings import DEFAULT_VAULT_MOUNT
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode

TOKEN = "eyJhbGciOiJIUzI1NiJ9.a-real-looking-ha-token.Zm9vYmFy"  # noqa: S105  # pragma: allowlist secret (a made-up token)


def ha_token(installation: Installation, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RUBY_VAULT_TOKEN": installation.bao.root_client().token,
        "RUBY_VAULT_ADDR": installation.bao.addr,
    }
    return subprocess.run(
        [sys.executable, "-m", "ruby_ctl", "secret", "ha-token", "--state-dir",
         str(installation.state.root), "--prefix", installation.prefix],
        input=stdin, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_the_token_is_stored_where_the_gateway_reads_it_and_audited(
    secure_installation: Installation,
) -> None:
    installation = secure_installation
    done = ha_token(installation, TOKEN + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr
    vault = installation.bao.root_client()
    path = ha_token_path(installation.prefix)
    stored = read_field(vault, DEFAULT_VAULT_MOUNT, path, HA_TOKEN_FIELD)
    assert stored is not None
    assert stored.reveal() == TOKEN
    source = read_field(vault, DEFAULT_VAULT_MOUNT, path, SOURCE_FIELD)
    assert source is not None
    assert source.reveal() == OPERATOR_SOURCE
    assert TOKEN not in spool_path(installation.state.root).read_text()

    operator = await installation.connect("operator")
    try:
        await flush(operator, installation.state.root)
        msg = await operator.jetstream().get_last_msg(
            installation.topology.stream(AUDIT).name,
            installation.subjects.audit("operator", "secret_written"),
        )
    finally:
        await operator.drain()
    record = decode(msg.data or b"").data
    assert isinstance(record, AuditRecordV1)
    assert record.target == f"vault:{DEFAULT_VAULT_MOUNT}/{path}#{HA_TOKEN_FIELD}"


def test_anything_but_one_token_is_refused_and_nothing_is_written(
    secure_installation: Installation,
) -> None:
    for bad in ("", "two words here that are long enough", "short"):
        done = ha_token(secure_installation, bad)
        assert done.returncode == 2, done.stdout
        assert "refused" in done.stdout
    path = ha_token_path(secure_installation.prefix)
    vault = secure_installation.bao.root_client()
    assert read_field(vault, DEFAULT_VAULT_MOUNT, path, HA_TOKEN_FIELD) is None


def _vault_ports() -> int:
    """A free port for OpenBao's API whose next port (its cluster port) is free too."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


async def test_on_a_fresh_state_directory_it_bootstraps_first_and_up_uses_the_token(
    tmp_path: Path, hasim_factory: SimulatorFactory, start_up: type[UpProcess]
) -> None:
    """The README's order: store the token, then `rubyctl up --ha-url` (same OpenBao port, at
    once) connects the gateway to that Home Assistant with it."""
    home = await hasim_factory(token=TOKEN)
    state = tmp_path / "state"
    vault_port = str(_vault_ports())
    env = {k: v for k, v in os.environ.items() if k not in ("RUBY_VAULT_TOKEN", "RUBY_VAULT_ADDR")}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ruby_ctl", "secret", "ha-token", "--state-dir", str(state),
         "--vault-port", vault_port],
        input=TOKEN + "\n", env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "rubyctl secret: bootstrapped the installation first" in done.stdout
    assert "rubyctl secret: stored the Home Assistant token in Vault" in done.stdout
    assert TOKEN not in output
    assert TOKEN not in spool_path(state).read_text()  # its audit record, waiting for NATS

    rules = tmp_path / "rules"
    rules.mkdir()
    up = start_up(state, rules, "--vault-port", vault_port, "--ha-url", home.url, "--quiet")
    # Read in a thread: the simulated home answers the gateway from this test's event loop.
    await asyncio.to_thread(up.read_until, "Ruby Core is up")
    assert up.find(r"^rubyctl up: bootstrap: nothing changed")
    assert up.find(r"^rubyctl up: gateway ready: ")  # /readyz: Home Assistant accepted the token
    assert not [line for line in up.lines if "demo home" in line]
    gateway_log = (state / "logs" / "gateway.log").read_text()
    assert "home assistant connected" in gateway_log
    assert await asyncio.to_thread(up.interrupt) == 0
    printed = "\n".join(up.lines)
    assert TOKEN not in printed
    assert TOKEN not in gateway_log
