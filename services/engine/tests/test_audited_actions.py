"""Every critical action leaves its audit record (the list: ``ruby_schemas.audit.AUDITED_ACTIONS``).

The engine's own actions are exercised here; the others where their code is tested, and the
last test checks that every listed action has a test asserting its record.
"""

from __future__ import annotations

import re
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ruby_engine.engine import Engine
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, Topology
from ruby_schemas.audit import AUDITED_ACTIONS, AuditOutcome, AuditRecordV1
from ruby_schemas.registry import decode

REPO = Path(__file__).resolve().parents[3]

FAILING = """
rules:
  - id: always_fails
    description: divides by zero when the fan turns on
    triggers: [{kind: state, entity_id: switch.fan, to: "on"}]
    actions:
      - kind: publish
        event_type: nonsense
        data: {ratio: "{{ 1 / 0 }}"}
"""


async def last_record(js: JetStreamContext, topo: Topology, action: str) -> AuditRecordV1 | None:
    """The engine's latest audit record of ``action``, if any."""
    subject = topo.subjects.audit("engine", action.replace(".", "_"))
    try:
        msg = await js.get_last_msg(topo.stream(AUDIT).name, subject)
    except NotFoundError:
        return None
    record = decode(msg.data or b"").data
    assert isinstance(record, AuditRecordV1)
    return record


async def test_rule_lifecycle_firing_and_failure_are_audited(
    engine: Engine,
    hasim: Simulator,
    rules_dir: Path,
    fan_text: str,
    nc: Client,
    topology_applied: Topology,
) -> None:
    js, topo = nc.jetstream(), topology_applied

    async def last(action: str) -> AuditRecordV1 | None:
        return await last_record(js, topo, action)

    loaded = await last("rule.loaded")
    assert loaded is not None
    assert loaded.target.startswith("rule:")
    (rules_dir / "fan.yaml").write_text(fan_text.replace("switch.fan", "switch.coffee_maker"))
    await eventually(lambda: _has(last, "rule.changed"), message="rule.changed audited")
    changed = await last("rule.changed")
    assert changed is not None
    assert changed.target == "rule:fan_on_with_guests"
    assert changed.reason.startswith("changed from version ")
    (rules_dir / "hallway.yaml").unlink()
    await eventually(lambda: _has(last, "rule.unloaded"), message="rule.unloaded audited")
    (rules_dir / "failing.yaml").write_text(FAILING)
    await eventually(lambda: "always_fails" in engine.core.rules, message="failing rule loaded")
    hasim.set_state("switch.fan", "off")
    hasim.set_state("switch.fan", "on")
    await eventually(lambda: _has(last, "rule.failed"), message="rule.failed audited")
    failed = await last("rule.failed")
    assert failed is not None
    assert failed.outcome == AuditOutcome.FAILED
    assert "division by zero" in failed.reason or "zero" in failed.reason


async def _has(last: object, action: str) -> bool:
    return await last(action) is not None  # type: ignore[operator]


def test_every_audited_action_has_a_test_that_asserts_its_record() -> None:
    """A listed action is only a promise once some test asserts its record's subject."""
    sources = "\n".join(
        path.read_text()
        for folder in ("pkg", "services", "tests_ha")
        for path in (REPO / folder).rglob("test_*.py")
    )
    missing = [
        action
        for action in AUDITED_ACTIONS
        if not re.search(rf'"({re.escape(action)}|{re.escape(action.replace(".", "_"))})"', sources)
    ]
    assert missing == []
