"""Hostile rule files dropped into a running engine's ``rules/`` never stop it (promise 7).

The outside probe of issue 12 killed the engine with ``for: 99999999999h`` and reset its NATS
connection with a 5,000-character id (after which a valid file was no longer loaded). Here
each hostile kind lands in the watched directory of an engine wired as the service wires it
(real nats-server, gateway and simulated home): every file is refused with a located error
that is logged, audited and in the status record; the connection is never reset; the rules
that ran before still run (including the last good version of a file overwritten with a
hostile one); and a valid file added afterwards loads and fires.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_engine.engine import Engine
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import STATUS, Topology
from ruby_rules.files import shown_name
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode
from ruby_schemas.status import RulesRecord, read_record

LATE = """
rules:
  - id: late_arrival
    description: a valid rule added after the hostile files
    triggers:
      - {kind: state, entity_id: input_boolean.late, to: "on"}
    actions:
      - {kind: call, service: switch.turn_on, target: {entity_id: switch.late_lamp}}
"""


def hostile_rule(rule_id: str, extra: str = "", for_: str = "1s") -> str:
    return f"""
rules:
  - id: {rule_id}
    description: hostile{extra}
    triggers:
      - {{kind: state, entity_id: binary_sensor.hallway_motion, to: "off", for: {for_}}}
    actions:
      - {{kind: call, service: light.turn_off, target: {{entity_id: light.hallway}}}}
"""


def alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nrules: []\n"


def drop(directory: Path, name: str, text: str) -> None:
    """Write a file whole (a temporary name the engine ignores, then a rename)."""
    (directory / f".{name}.tmp").write_text(text)
    os.replace(directory / f".{name}.tmp", directory / name)


def at(directory: Path, name: str, value: str) -> str:
    """``name:line:column:`` of the first ``value`` in the file ``name``."""
    text = (directory / name).read_text()
    offset = text.index(value)
    line = text.count("\n", 0, offset) + 1
    return f"{name}:{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}:"


def drop_hostile_files(directory: Path) -> dict[str, str]:
    """Every hostile kind, by file name; the value is the start of its first error."""
    os.mkfifo(directory / "fifo.yaml")
    (directory / "zero.yaml").symlink_to("/dev/zero")
    (directory / "urandom.yaml").symlink_to("/dev/urandom")
    with (directory / ".huge.tmp").open("wb") as out:
        out.truncate(4 * 1024**3)  # sparse: no disk used
    os.replace(directory / ".huge.tmp", directory / "huge.yaml")
    drop(directory, "duration.yaml", hostile_rule("forever", for_="99999999999h"))
    late = "\n    backlog: {max_lateness: 99999999999h}"
    drop(directory, "lateness.yaml", hostile_rule("lateness", late))
    drop(directory, "long_id.yaml", hostile_rule("i" * 5000))
    drop(directory, "booleans.yaml", hostile_rule("booleans", "\n    mode: queued\n    max: true"))
    drop(directory, "bomb.yaml", alias_bomb())
    escape = hostile_rule("escape").replace(
        "light.hallway}", "light.hallway}, data: {x: \"{{ ''.__class__.__mro__ }}\"}"
    )
    drop(directory, "escape.yaml", escape)
    drop(directory, os.fsdecode(b"bad\xff\n.yaml"), LATE.replace("late_arrival", "badname"))
    # A good file overwritten with a hostile version: its last good rules must keep running.
    drop(directory, "hallway.yaml", hostile_rule("hallway_light_off", for_="99999999999h"))
    refused = "not a regular file: a rule file must be one"
    return {
        "fifo.yaml": f"fifo.yaml:1:1: refused: a named pipe (FIFO), {refused}",
        "zero.yaml": f"zero.yaml:1:1: refused: a symbolic link to a character device, {refused}",
        "urandom.yaml": "urandom.yaml:1:1: refused: a symbolic link to a character device",
        "huge.yaml": "huge.yaml:1:1: refused: 4,294,967,296 bytes, more than 131,072 bytes",
        "duration.yaml": at(directory, "duration.yaml", "9999")
        + " rule 'forever': triggers[0].for: duration '99999999999h' out of range",
        "lateness.yaml": at(directory, "lateness.yaml", "9999")
        + " rule 'lateness': backlog.max_lateness: duration '99999999999h' out of range",
        "long_id.yaml": at(directory, "long_id.yaml", "iii") + " rules[0]: id: invalid id",
        "booleans.yaml": at(directory, "booleans.yaml", "true")
        + " rule 'booleans': max: expected a whole number; got true/false",
        "bomb.yaml": "bomb.yaml:",
        os.fsdecode(b"bad\xff\n.yaml"): "bad\\xff\\n.yaml:1:1: refused: the file name has",
        "escape.yaml": at(directory, "escape.yaml", '"{{') + " rule 'escape': actions[0].data.x",
        "hallway.yaml": at(directory, "hallway.yaml", "9999")
        + " rule 'hallway_light_off': triggers[0].for: duration '99999999999h' out of range",
    }


async def refused_in_status(kv: KeyValue) -> dict[str, tuple[str, ...]]:
    """The refused files of the ``engine.rules`` record (what ``rubyctl rules status`` shows)."""
    try:
        entry = await kv.get("engine.rules")
    except KeyNotFoundError:
        return {}
    return read_record(RulesRecord, entry.value or b"", key="engine.rules").refused_files


async def test_hostile_rule_files_are_refused_and_the_engine_keeps_serving(
    engine: Engine,
    hasim: Simulator,
    rules_dir: Path,
    nc: Client,
    topology_applied: Topology,
) -> None:
    js = nc.jetstream()
    audited: set[str] = set()
    sub = await js.subscribe(
        topology_applied.subjects.audit("engine", "rule_rejected"), ordered_consumer=True
    )
    reconnects = nc.stats["reconnects"]
    running = set(engine.core.rules)
    expected = drop_hostile_files(rules_dir)

    expected = {shown_name(name): start for name, start in expected.items()}

    def refused_now() -> bool:
        return set(engine.status.rules_record().refused_files) == set(expected)

    await eventually(refused_now, within=90, message="every hostile file refused")
    errors = engine.status.rules_record().refused_files
    for name, start in expected.items():
        assert errors[name][0].startswith(start), errors[name]
        assert all(len(error) < 700 for error in errors[name])
    assert set(engine.core.rules) == running  # nothing unloaded, nothing hostile loaded

    async def all_audited() -> bool:
        async for msg in _available(sub):
            record = decode(msg.data).data
            assert isinstance(record, AuditRecordV1)
            assert record.outcome == "failed"
            audited.add(str((record.details or {})["file"]))
        return audited >= set(expected)

    await eventually(all_audited, within=30, message="every refusal audited")
    kv = await js.key_value(topology_applied.bucket(STATUS).bucket)

    async def in_status() -> bool:
        return set(await refused_in_status(kv)) == set(expected)

    await eventually(in_status, message="every refusal in the status record")

    # Still serving: the last good hallway rules and the untouched fan rule run.
    hasim.set_state("sensor.outdoor_illuminance", "5")
    hasim.set_state("light.hallway", "off")
    hasim.set_state("binary_sensor.hallway_motion", "on")
    await eventually(lambda: hasim.states["light.hallway"].state == "on", message="light on")
    hasim.set_state("binary_sensor.hallway_motion", "off")  # the kept `for: 1s` version
    await eventually(lambda: hasim.states["light.hallway"].state == "off", message="light off")
    hasim.set_state("switch.fan", "off")
    hasim.set_state("input_boolean.guest_mode", "on")
    await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")

    # A valid file added afterwards loads and fires; the connection was never reset.
    drop(rules_dir, "late.yaml", LATE)
    await eventually(lambda: "late_arrival" in engine.core.rules, message="late file loaded")
    hasim.set_state("switch.late_lamp", "off")
    hasim.set_state("input_boolean.late", "on")
    await eventually(lambda: hasim.states["switch.late_lamp"].state == "on", message="late rule")
    assert nc.is_connected
    assert nc.stats["reconnects"] == reconnects
    assert engine.status.ready
    await sub.unsubscribe()


async def _available(sub: JetStreamContext.PushSubscription) -> AsyncIterator[Msg]:
    """The messages already delivered to ``sub``, without waiting long for more."""
    while True:
        try:
            yield await sub.next_msg(timeout=0.2)
        except NatsTimeoutError:
            return
