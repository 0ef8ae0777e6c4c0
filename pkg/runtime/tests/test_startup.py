"""A full start-up: settings, logging, Vault (AppRole), NATS over TLS + NKEY; no secret logged."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from nats.aio.client import Client

from ruby_ctl.testing import Installation
from ruby_natsx.connection import connect_service
from ruby_runtime.redaction import SECRET_VALUE_PATTERNS
from ruby_runtime.startup import start_service
from ruby_runtime.vault import nats_seed_path
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode

PORCH_RULE = """
rules:
  - id: porch
    description: porch light with the front door
    triggers: [{kind: state, entity_id: binary_sensor.front_door, to: "on"}]
    actions: [{kind: call, service: light.turn_on, target: {entity_id: light.porch}}]
"""

SECRET_SHAPES = re.compile("|".join(f"(?:{p})" for p in SECRET_VALUE_PATTERNS.values()))


async def test_start_service_connects_as_the_service(installation: Installation) -> None:
    logs = io.StringIO()
    started = await start_service(
        "engine", connect_service, environ=installation.environ(), log_stream=logs
    )
    nc: Client = started.nats
    try:
        assert started.settings.identity == "engine"
        assert nc.new_inbox().startswith("_INBOX_engine.")
        subjects = installation.subjects
        ack = await nc.jetstream().publish(subjects.rule("porch", "fired"), b"{}")
        assert ack.stream == installation.topology.stream("EVENTS").name
    finally:
        await nc.drain()
    events = [json.loads(line)["event"] for line in logs.getvalue().splitlines()]
    assert events[:4] == ["starting", "vault login", "secret read", "nats connected"]
    assert installation.seed("engine").reveal() not in repr(started) + logs.getvalue()


def test_a_full_start_up_logs_no_seed_token_or_secret_id(
    installation: Installation, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "porch.yaml").write_text(PORCH_RULE)
    env = {
        **os.environ,
        **installation.environ(RUBY_LOG_LEVEL="DEBUG"),
        "RUBY_RULES_DIR": str(rules),
    }
    engine = subprocess.Popen(
        [sys.executable, "-m", "ruby_engine.main"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        assert engine.stdout is not None
        for line in engine.stdout:  # until the engine says it runs (or exits)
            lines.append(line)
            if json.loads(line)["event"] == "engine running":
                break
        engine.send_signal(signal.SIGTERM)
        rest, errors = engine.communicate(timeout=60)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    stdout = "".join(lines) + rest
    output = stdout + errors
    records = [json.loads(line) for line in stdout.splitlines()]
    events = [r["event"] for r in records]
    for step in ("starting", "vault login", "secret read", "nats connected", "engine running"):
        assert step in events, output
    assert "engine stopped" in events[events.index("engine running") :], output
    assert engine.returncode == 0, output

    async def audited() -> object:  # the seed it read is audited: where, never what
        nc = await installation.connect("operator")
        try:
            msg = await nc.jetstream().get_last_msg(
                installation.topology.stream("AUDIT").name,
                installation.subjects.audit("engine", "secret_read"),
            )
        finally:
            await nc.drain()
        assert installation.seed("engine").reveal() not in (msg.data or b"").decode()
        return decode(msg.data or b"").data

    record = asyncio.run(audited())
    assert isinstance(record, AuditRecordV1)
    assert record.action == "secret.read"
    assert record.target == (
        f"vault:{installation.settings('engine').vault.mount}/"
        f"{nats_seed_path(installation.prefix, 'engine')}#seed"
    )
    assert any(r["logger"].startswith(("urllib3", "nats")) for r in records), "DEBUG reached"

    state = installation.state
    secrets = {
        "NKEY seed": installation.seed("engine").reveal(),
        "AppRole role id": state.role_id_file("engine").read_text().strip(),
        "AppRole secret id": state.secret_id_file("engine").read_text().strip(),
        "root token": installation.bao.root_client().token,
    }
    for name, value in secrets.items():
        assert value not in output, f"the {name} was logged"
    assert SECRET_SHAPES.search(output) is None, "something secret-shaped was logged"
    assert "[REDACTED]" not in output, "a secret reached the logger (redaction caught it)"
