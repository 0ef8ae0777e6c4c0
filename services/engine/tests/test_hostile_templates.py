"""A hostile template in a running engine: refused at load, or its run stopped; rules go on.

A rule file whose template can never work (a registry function) is refused with a located
error while the engine keeps its other rules; a rule whose template would loop for hours is
loaded (nothing shows it before it runs), its run is stopped by the render budget and
fails with the reason (audited as ``rule.failed``), and a rule on the same change, then
another rule afterwards, still fire in the simulated home.
"""

from __future__ import annotations

import time
from pathlib import Path

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from ruby_engine.engine import Engine
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, Topology
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode

RUNAWAY = """
rules:
  - id: runaway_template
    description: a template that would loop for hours
    triggers: [{kind: state, entity_id: input_boolean.tmpl_go, to: "on"}]
    actions:
      - kind: publish
        event_type: never_sent
        data:
          n: >-
            {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}
  - id: same_change
    description: the same change, a template Home Assistant users write
    triggers: [{kind: state, entity_id: input_boolean.tmpl_go, to: "on"}]
    conditions:
      - {kind: expression, value: "{{ is_state('input_boolean.tmpl_go', 'on') }}"}
    actions:
      - kind: call
        service: switch.turn_on
        target: {entity_id: "{{ 'switch.tmpl_' ~ 'lamp' }}"}
"""

UNSUPPORTED = """
rules:
  - id: kitchen_lights
    description: needs the area registry
    triggers: [{kind: state, entity_id: input_boolean.tmpl_go, to: "on"}]
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: "{{ area_entities('kitchen') }}"}
"""


async def test_a_hostile_template_fails_its_run_and_the_engine_keeps_serving(
    engine: Engine,
    hasim: Simulator,
    rules_dir: Path,
    nc: Client,
    topology_applied: Topology,
) -> None:
    js, topo = nc.jetstream(), topology_applied
    (rules_dir / "unsupported.yaml").write_text(UNSUPPORTED)
    (rules_dir / "runaway.yaml").write_text(RUNAWAY)

    def refused() -> list[str]:
        return list(engine.status.rules_record().refused_files.get("unsupported.yaml", []))

    await eventually(lambda: "runaway_template" in engine.core.rules, message="runaway loaded")
    await eventually(lambda: bool(refused()), message="unsupported.yaml refused")
    [error] = refused()
    assert error.startswith("unsupported.yaml:9:29: rule 'kitchen_lights': actions[0].target")
    assert "'area_entities' is not supported yet" in error
    assert "kitchen_lights" not in engine.core.rules

    hasim.set_state("switch.tmpl_lamp", "off")
    started = time.monotonic()
    hasim.set_state("input_boolean.tmpl_go", "on")
    await eventually(
        lambda: hasim.states["switch.tmpl_lamp"].state == "on", message="the other rule fired"
    )
    assert time.monotonic() - started < 30  # the runaway run did not hold the engine up

    async def failure() -> AuditRecordV1 | None:
        subject = topo.subjects.audit("engine", "rule_failed")
        try:
            msg = await js.get_last_msg(topo.stream(AUDIT).name, subject)
        except NotFoundError:
            return None
        record = decode(msg.data or b"").data
        assert isinstance(record, AuditRecordV1)
        return record if record.target == "rule:runaway_template" else None

    async def failed() -> bool:
        return await failure() is not None

    await eventually(failed, message="the runaway run failed and was audited")
    record = await failure()
    assert record is not None
    assert "more than 100,000 steps" in record.reason or "ran longer than" in record.reason

    # Afterwards another rule still fires, and the engine never stopped serving.
    hasim.set_state("switch.fan", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
    assert engine.status.ready
    assert nc.is_connected
