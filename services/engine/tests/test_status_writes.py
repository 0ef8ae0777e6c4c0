"""The ``engine.rules`` record holds every rule, so it is not rewritten at every flush: new
runs reach it at most every `RULES_INTERVAL` (their traces at each flush), a changed rule set
at once. A `Status` of its own writes under a key prefix of its own in the real status bucket,
so the running engine's periodic writes do not interfere; a subscription sees every write, in
the order they were made."""

from __future__ import annotations

import json

from nats.aio.client import Client
from nats.aio.msg import Msg

from ruby_engine.engine import Engine
from ruby_engine.status import FLUSH_INTERVAL, RULES_INTERVAL, STATUS_INTERVAL, Status
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import STATUS, Topology
from ruby_schemas.traces import TraceRecord


async def test_runs_reach_the_rules_record_at_its_interval_and_a_new_rule_set_at_once(
    engine: Engine, hasim: Simulator, nc: Client, topology_applied: Topology
) -> None:
    # What it saves: the record was rewritten at each flush while rules ran.
    assert RULES_INTERVAL / FLUSH_INTERVAL >= 10
    assert RULES_INTERVAL <= STATUS_INTERVAL  # `rules status` is never staler than `engine`
    hasim.set_state("sensor.outdoor_illuminance", "10")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    await eventually(lambda: bool(engine.status.traces("hallway_light_on")), message="a run")
    [run] = engine.status.traces("hallway_light_on")

    prefix = f"$KV.{topology_applied.bucket(STATUS).bucket}.probe"
    seen: list[str] = []

    async def on_write(msg: Msg) -> None:
        key = msg.subject.removeprefix(f"{prefix}.")
        if key == "rules":
            key += f" runs={json.loads(msg.data)['rules']['hallway_light_on']['runs']}"
        seen.append(key)

    sub = await nc.subscribe(f"{prefix}.>", cb=on_write)
    try:
        probe = Status(nc, prefix, engine.core, engine.ruleset)

        async def step(n: int) -> list[str]:
            await nc.publish(f"{prefix}.marker", str(n).encode())  # after what the step wrote
            await eventually(lambda: "marker" in seen[-1:], message=f"step {n} seen")
            done, seen[:] = seen[:-1], []
            return done

        await probe.flush(counts=False)  # a new rule set: written at once, whatever `counts`
        assert await step(1) == ["rules runs=0"]
        probe.record([run])
        await probe.flush(counts=False)  # a flush between two writes of the rules record
        assert await step(2) == ["trace.hallway_light_on"]  # the trace at once, not the rules
        await probe.flush(counts=True)  # the interval has come
        assert await step(3) == ["rules runs=1"]
        probe.touch_rules()  # a reload changed the rule set: no waiting for the interval
        await probe.flush(counts=False)
        assert await step(4) == ["rules runs=1"]
    finally:
        await sub.unsubscribe()


async def test_a_trace_record_is_the_runs_model_dump_each_run_dumped_once(
    engine: Engine, hasim: Simulator, nc: Client
) -> None:
    hasim.set_state("sensor.outdoor_illuminance", "10")
    for state in ("on", "off", "on"):
        hasim.set_state("binary_sensor.hallway_motion", state)
    await eventually(lambda: bool(engine.status.traces("hallway_light_on")), message="a run")
    [run] = engine.status.traces("hallway_light_on")[-1:]
    other = run.model_copy(update={"run_id": f"{run.run_id}-2", "reason": 'a "quoted" reason'})
    probe = Status(nc, "probe", engine.core, engine.ruleset)
    probe.record([run, other])
    written = probe.trace_record("hallway_light_on")
    # The bytes the engine wrote before: the record's model_dump through json.dumps.
    whole = TraceRecord(rule_id="hallway_light_on", runs=(run, other))
    assert written == json.dumps(whole.model_dump(mode="json", by_alias=True)).encode()
    assert TraceRecord.model_validate_json(written) == whole
    replaced = other.model_copy(update={"status": "failed"})  # a paused run's trace replaced
    probe.record([replaced])
    assert TraceRecord.model_validate_json(probe.trace_record("hallway_light_on")).runs == (
        run,
        replaced,
    )
    assert probe.trace_record("no_such_rule") == b'{"rule_id": "no_such_rule", "runs": []}'
