"""`rubyctl rules check | test | replay | status | trace`: rule files, and a real installation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nats.aio.client import Client

from ruby_ctl.cli import main
from ruby_ctl.testing import Installation
from ruby_natsx.kvread import read_bucket
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.topology import EVENTS, STATUS
from ruby_rules import load_dir
from ruby_rules.engine.ids import command_id
from ruby_schemas.envelope import make_envelope
from ruby_schemas.ha_events import EntityState, HaLifecycleV1, StateChangedV1
from ruby_schemas.registry import encode

T = TypeVar("T")

HALLWAY = """\
rules:
  - id: hallway_light_on
    description: Light on with motion after dusk.
    triggers:
      - kind: state
        id: motion
        entity_id: binary_sensor.hallway_motion
        to: "on"
    conditions:
      - kind: numeric_state
        entity_id: sensor.outdoor_illuminance
        below: 50
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: light.hallway}
        data: {brightness_pct: 60}

  - id: hallway_light_off
    description: Light off after 5 minutes without motion.
    mode: restart
    triggers:
      - kind: state
        id: no_motion
        entity_id: binary_sensor.hallway_motion
        to: "off"
        for: 5m
    conditions:
      - kind: state
        entity_id: light.hallway
        state: "on"
    actions:
      - kind: call
        service: light.turn_off
        target: {entity_id: light.hallway}
"""

BROKEN = """\
rules:
  - id: broken
    description: A trigger kind that does not exist.
    triggers:
      - kind: sunrise_ish
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: light.x}
"""

VERSION = "37d1f5a2bb041ea9"  # pragma: allowlist secret (a rule version, not a secret)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def jsonl(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-20T18:{minute:02d}:{second:02d}Z"


# --- check ---------------------------------------------------------------------------------


def test_check_passes_a_good_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hallway.yaml").write_text(HALLWAY)
    code, out, _ = cli(capsys, "rules", "check", "--dir", str(tmp_path))
    assert code == 0
    assert out.strip() == "2 rules in 1 file OK"


def test_check_prints_located_errors_of_a_broken_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hallway.yaml").write_text(HALLWAY)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    code, out, _ = cli(capsys, "rules", "check", "--dir", str(tmp_path))
    assert code == 1
    [error, summary] = out.splitlines()
    assert error.startswith("broken.yaml:5:15: rule 'broken': triggers[0]")
    assert "unknown trigger kind 'sunrise_ish'" in error
    assert summary.startswith("1 error in 1 file")


def test_check_of_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "rules", "check", "--dir", str(tmp_path / "nope"))
    assert code == 2
    assert "is not a directory" in err


# --- test ----------------------------------------------------------------------------------


@pytest.fixture
def hallway(tmp_path: Path) -> Path:
    path = tmp_path / "hallway.yaml"
    path.write_text(HALLWAY)
    return path


def test_the_off_call_comes_five_quiet_minutes_after_the_last_motion(
    hallway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = jsonl(
        tmp_path / "evening.jsonl",
        "# dusk, motion, a pause, motion again, then quiet",
        {"time": at(0), "entity_id": "sensor.outdoor_illuminance", "state": 12},
        {"time": at(0, 5), "entity_id": "binary_sensor.hallway_motion", "state": "on"},
        {"time": at(0, 5), "entity_id": "light.hallway", "state": "on"},
        {"time": at(1), "entity_id": "binary_sensor.hallway_motion", "state": "off"},
        {"time": at(3), "entity_id": "binary_sensor.hallway_motion", "state": "on"},
        {"time": at(3, 30), "entity_id": "binary_sensor.hallway_motion", "state": "off"},
    )
    argv = ("rules", "test", str(hallway), "--events", str(events), "--tz", "UTC")
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "-- 2026-11-20 (UTC)"
    assert lines[1] == (
        '18:00:05 hallway_light_on: call light.turn_on light.hallway {"brightness_pct": 60}'
    )
    assert (
        "18:03:00 hallway_light_off: for: binary_sensor.hallway_motion changed; "
        "the timer due at 18:06:00 is cancelled"
    ) in lines
    offs = [line for line in lines if "light.turn_off" in line]
    assert offs == ["18:08:30 hallway_light_off: call light.turn_off light.hallway"]
    assert "summary: 6 events from 18:00:00 to 18:03:30, simulated until 19:03:30" in out
    assert "hallway_light_off  1 command; runs: finished 1" in out

    code, out, _ = cli(capsys, *argv, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    [off] = [r for r in records if r["what"] == "call" and r["service"] == "light.turn_off"]
    assert off["time"] == "2026-11-20T18:08:30+00:00"
    assert off["target"] == {"entity_id": ["light.hallway"]}
    assert off["command_id"].startswith("cmd-")
    assert records[-1]["what"] == "summary"
    assert records[-1]["rules"]["hallway_light_on"]["commands"] == 2


def test_a_blocking_condition_shows_as_not_run_and_states_come_from_a_file(
    hallway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    states = tmp_path / "states.json"
    states.write_text(json.dumps({"sensor.outdoor_illuminance": {"state": "800"}}))
    events = jsonl(
        tmp_path / "day.jsonl",
        {"time": "2026-11-20T12:00:00", "entity_id": "binary_sensor.hallway_motion", "state": "on"},
    )
    code, out, _ = cli(
        capsys, "rules", "test", str(hallway), "--events", str(events),
        "--states", str(states), "--tz", "Europe/Paris",
    )  # fmt: skip
    assert code == 0
    assert "-- 2026-11-20 (CET)" in out
    assert "12:00:00 hallway_light_on: not run: condition 0 (numeric_state) false" in out
    assert "call" not in out.split("summary:")[0]


def test_a_delay_waits_and_an_envelope_dump_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "pump.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: pulse\n"
        "    description: on, wait, off\n"
        "    triggers: [{kind: state, entity_id: input_boolean.go, to: 'on'}]\n"
        "    actions:\n"
        "      - {kind: call, service: switch.turn_on, target: {entity_id: switch.pump}}\n"
        "      - {kind: delay, duration: 10m}\n"
        "      - {kind: call, service: switch.turn_off, target: {entity_id: switch.pump}}\n"
    )
    t = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    change = StateChangedV1(
        entity_id="input_boolean.go",
        old_state=EntityState(state="off", last_changed=t, last_updated=t),
        new_state=EntityState(state="on", last_changed=t, last_updated=t),
        context_id="ctx-1",
    )
    envelope = make_envelope(change, source="ruby/gateway", time=t, message_id="msg-1")
    events = jsonl(tmp_path / "dump.jsonl", encode(envelope).decode())
    code, out, _ = cli(capsys, "rules", "test", str(rules), "--events", str(events), "--tz", "UTC")
    assert code == 0
    assert out.splitlines()[1:4] == [
        "18:00:00 pulse: call switch.turn_on switch.pump",
        "18:00:00 pulse: waiting until 18:10:00 (delay)",
        "18:10:00 pulse: call switch.turn_off switch.pump",
    ]


def test_home_assistants_start_from_a_dump_fires_a_rule_that_fires_an_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "start.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: say_up\n"
        "    description: tells Home Assistant's bus that Ruby Core saw it start\n"
        "    triggers: [{kind: homeassistant, event: start}]\n"
        "    actions:\n"
        "      - {kind: fire_event, event_type: ruby.saw_start, data: {how: '{{ 1 + 1 }}'}}\n"
    )
    t = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    start = HaLifecycleV1(event="start", boot=t, at=t, seen="reconnect")
    envelope = make_envelope(start, source="ruby/gateway", time=t, message_id="ha.lifecycle.1")
    events = jsonl(tmp_path / "dump.jsonl", encode(envelope).decode())
    code, out, _ = cli(capsys, "rules", "test", str(rules), "--events", str(events), "--tz", "UTC")
    assert code == 0
    assert out.splitlines()[1] == '18:00:00 say_up: fire_event ruby.saw_start {"how": 2}'


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('{"time": oops}', "not JSON"),
        ('{"time": "2026-11-20T18:05:00Z", "entity_id": "light.hallway"}', "state: Field required"),
        ('{"time": "2026-11-20T18:05:00Z", "entity": "light.hallway"}', "expected a state change"),
        ('{"time": "2026-11-20T17:00:00Z", "event_type": "x"}', "must be in time order"),
    ],
)
def test_a_malformed_events_line_is_an_error_naming_it(
    hallway: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, expected: str
) -> None:
    events = jsonl(
        tmp_path / "events.jsonl",
        {"time": at(0), "entity_id": "sensor.outdoor_illuminance", "state": 12},
        "",
        bad,
        {"time": at(9), "entity_id": "binary_sensor.hallway_motion", "state": "on"},
    )
    code, out, err = cli(capsys, "rules", "test", str(hallway), "--events", str(events))
    assert code == 1
    assert out == ""  # nothing printed as if it had run
    assert f"{events}:3: " in err
    assert expected in err


def test_a_rule_file_with_errors_is_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "broken.yaml"
    rules.write_text(BROKEN)
    events = jsonl(tmp_path / "e.jsonl", {"time": at(0), "entity_id": "light.x", "state": "on"})
    code, out, err = cli(capsys, "rules", "test", str(rules), "--events", str(events))
    assert code == 1
    assert out == ""
    assert f"{rules}:5:15: " in err


# --- against the installation --------------------------------------------------------------


class Live:
    """The session's secured installation, driven through `rubyctl rules` as the operator."""

    def __init__(self, installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
        self.installation = installation
        self.subjects = installation.subjects
        self.topo = installation.topology
        self.bucket = self.topo.bucket(STATUS).bucket
        for name, value in installation.environ().items():
            monkeypatch.setenv(name, value)

    def run(self, coro_fn: Callable[[Client], Awaitable[T]], identity: str = OPERATOR) -> T:
        async def go() -> T:
            nc = await self.installation.connect(identity)
            try:
                return await coro_fn(nc)
            finally:
                await nc.drain()

        return asyncio.run(go())

    def write_status(self, records: dict[str, Any]) -> None:
        """Write engine status keys as the engine does: as the engine identity, its own keys."""

        async def put(nc: Client) -> None:
            kv = await nc.jetstream().key_value(self.bucket)
            for key, value in records.items():
                await kv.put(key, json.dumps(value).encode())

        self.run(put, identity="engine")

    def forget_status(self) -> None:
        """Remove every engine key (the installation is shared by the session): the operator
        lists them, the engine purges its own (nobody may purge a bucket through the API)."""

        async def engine_keys(nc: Client) -> list[str]:
            keys = await read_bucket(nc, self.bucket)
            return [k for k in keys if k == "engine" or k.startswith("engine.")]

        keys = self.run(engine_keys)

        async def purge(nc: Client) -> None:
            kv = await nc.jetstream().key_value(self.bucket)
            for key in keys:
                await kv.purge(key)

        self.run(purge, identity="engine")


@pytest.fixture
def live(installation: Installation, monkeypatch: pytest.MonkeyPatch) -> Live:
    inst = Live(installation, monkeypatch)
    inst.forget_status()
    return inst


def test_replay_lists_the_commands_recorded_events_would_cause(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    button, pump = f"input_boolean.go_{tag}", f"switch.pump_{tag}"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "pump.yaml").write_text(
        "rules:\n"
        "  - id: pump_on\n"
        "    description: start the pump when asked\n"
        f"    triggers: [{{kind: state, entity_id: {button}, to: 'on'}}]\n"
        "    actions:\n"
        f"      - {{kind: call, service: switch.turn_on, target: {{entity_id: {pump}}},"
        " data: {speed: 2}}\n"
        "  - id: pump_off_later\n"
        "    description: not due yet, so not listed\n"
        f"    triggers: [{{kind: state, entity_id: {button}, to: 'on', for: 1h}}]\n"
        "    actions:\n"
        f"      - {{kind: call, service: switch.turn_off, target: {{entity_id: {pump}}}}}\n"
    )
    flips = [("off", "on"), ("on", "off"), ("off", "on")]
    ids = [f"replay-{tag}-{i}" for i in range(len(flips))]
    times: list[datetime] = []

    async def publish(nc: Client) -> None:
        # Stamped with the real time, as the gateway does: the replay's clock follows the
        # stream, which other tests of the session also publish to.
        js = nc.jetstream()
        for i, (old, new) in enumerate(flips):
            t = datetime.now(UTC)
            times.append(t)
            change = StateChangedV1(
                entity_id=button,
                old_state=EntityState(state=old, last_changed=t, last_updated=t),
                new_state=EntityState(state=new, last_changed=t, last_updated=t),
                context_id=f"ctx-{tag}-{i}",
            )
            envelope = make_envelope(change, source="ruby/gateway", time=t, message_id=ids[i])
            await js.publish(
                live.subjects.ha_state(button),
                encode(envelope),
                headers={"Nats-Msg-Id": envelope.id},
                stream=live.topo.stream(EVENTS).name,
            )

    live.run(publish)

    argv = ("rules", "replay", "--since", "1h", "--dir", str(rules), "--tz", "UTC")
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert "initial states: empty" in out
    calls = [line for line in out.splitlines() if " call " in line]
    assert len(calls) == 2
    [pump_on] = [rule for rule in load_dir(rules).rules if rule.id == "pump_on"]
    first_id = command_id("pump_on", pump_on.version, ids[0], (0,))  # as the engine derives it
    assert calls[0].endswith(f'pump_on: call switch.turn_on {pump} {{"speed": 2}}  [{first_id}]')
    assert "turn_off" not in out
    assert "pump_on         2 commands; runs: finished 2" in out

    code, out, _ = cli(capsys, *argv, "--rule", "pump_on", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    commands = [r for r in records if r["what"] == "call"]
    assert [c["target"] for c in commands] == [{"entity_id": [pump]}] * 2
    assert [c["run_id"] for c in commands] != [None, None]
    assert [c["time"] for c in commands] == [times[0].isoformat(), times[2].isoformat()]
    assert records[-1]["what"] == "summary"

    code, _, err = cli(capsys, *argv, "--rule", "nope")
    assert code == 1
    assert "rule 'nope' is not defined" in err


def _trace(run: str, status: str, reason: str, minute: int) -> dict[str, Any]:
    when = f"2026-11-20T18:{minute:02d}:00+00:00"
    steps: list[dict[str, Any]] = [
        {"at": when, "path": "condition.0", "kind": "state", "result": "true"},
    ]
    commands = []
    if status == "finished":
        steps.append(
            {"at": when, "path": "action.0", "kind": "call", "result": "sent light.turn_off",
             "command_id": f"cmd-{run}"}
        )  # fmt: skip
        commands.append(f"cmd-{run}")
    return {
        "run_id": f"x-{run}",
        "rule_id": "x",
        "version": VERSION,
        "file": "hallway.yaml",
        "trigger": {
            "kind": "state",
            "id": "no_motion",
            "event_id": f"evt-{run}",
            "time": when,
            "entity_id": "binary_sensor.hallway_motion",
            "from": "on",
            "to": "off",
        },
        "updated": when,
        "status": status,
        "reason": reason,
        "steps": steps,
        "command_ids": commands,
    }


def _rules_record(refused: dict[str, list[str]]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "updated": now.isoformat(),
        "rules": {
            "x": {
                "file": "hallway.yaml", "where": "hallway.yaml:3:5",
                "version": VERSION, "mode": "restart", "runs": 7, "failed": 1,
                "last_status": "not_run", "last_reason": "condition 0 (state) false",
                "last_run": (now - timedelta(minutes=3)).isoformat(),
            },
            "y": {
                "file": "other.yaml", "where": "other.yaml:2:5", "version": "0123456789abcdef",
                "mode": "single", "runs": 0, "failed": 0, "last_status": "",
                "last_reason": "", "last_run": "",
            },
        },
        "refused_files": refused,
    }  # fmt: skip


def _engine_record(refused: list[str]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"ready": True, "updated": now, "rules": 2, "timers": 1, "refused_files": refused}


def test_status_prints_the_rules_table_and_refused_files(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.write_status({"engine": _engine_record([]), "engine.rules": _rules_record({})})
    code, out, err = cli(capsys, "rules", "status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("engine: ready; 2 rule(s), 1 timer(s); status written ")
    assert lines[1].split() == [
        "RULE", "FILE", "VERSION", "MODE", "RUNS", "FAILED", "LAST", "WHEN", "REASON",
    ]  # fmt: skip
    assert lines[2].split() == [
        "x", "hallway.yaml", "37d1f5a2", "restart", "7", "1", "not_run", "3m", "ago",
        "condition", "0", "(state)", "false",
    ]  # fmt: skip
    assert lines[3].split() == ["y", "other.yaml", "01234567", "single", "0", "0", "-", "-"]

    error = "broken.yaml:5:15: rule 'broken': triggers[0]: unknown trigger kind 'sunrise_ish'"
    live.write_status(
        {
            "engine": _engine_record(["broken.yaml"]),
            "engine.rules": _rules_record({"broken.yaml": [error]}),
        }
    )
    code, out, _ = cli(capsys, "rules", "status")
    assert code == 1
    assert "refused files (1)" in out
    assert f"    {error}" in out


def test_status_refuses_a_record_that_is_not_the_contract_naming_the_field(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = _rules_record({})
    rules["rules"]["x"]["runs"] = "seven"
    del rules["rules"]["y"]["mode"]
    live.write_status({"engine": _engine_record([]), "engine.rules": rules})
    code, out, err = cli(capsys, "rules", "status")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "rubyctl rules status: status key 'engine.rules' is unreadable: "
        "rules.x.runs: Input should be a valid integer; rules.y.mode: Field required"
    ]
    assert "seven" not in err


def test_trace_prints_recent_runs_step_by_step(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [
        _trace("a", "finished", "", 1),
        _trace("b", "not_run", "condition 0 (state) false", 2),
        _trace("c", "finished", "", 3),
    ]
    live.write_status(
        {
            "engine": _engine_record([]),
            "engine.rules": _rules_record({}),
            "engine.trace.x": {"rule_id": "x", "runs": runs},
        }
    )
    code, out, err = cli(capsys, "rules", "trace", "x", "--last", "2")
    assert code == 0, err
    assert out.startswith("x: 2 of 3 recorded run(s), oldest first")
    blocks = out.split("\n\n")[1:]
    assert "x-a" not in out
    assert blocks[0].splitlines()[0].endswith("not_run: condition 0 (state) false")
    newest = blocks[1].splitlines()
    assert newest[0].endswith("finished")
    assert newest[1] == "  run      x-c (version 37d1f5a2)"
    assert newest[2].startswith(
        "  trigger  no_motion (state): binary_sensor.hallway_motion on -> off at "
    )
    assert newest[3].split() == ["step", "condition.0", "state", "true"]
    assert newest[4].split() == ["step", "action.0", "call", "sent", "light.turn_off", "cmd-c"]
    assert newest[5] == "  commands cmd-c"

    code, out, _ = cli(capsys, "rules", "trace", "x", "--json")
    assert [json.loads(line)["run_id"] for line in out.splitlines()] == ["x-a", "x-b", "x-c"]

    code, out, _ = cli(capsys, "rules", "trace", "y")
    assert code == 0
    assert "y: no runs recorded yet" in out

    code, _, err = cli(capsys, "rules", "trace", "nope")
    assert code == 1
    assert "the engine has no rule 'nope'; its rules: x, y" in err


def test_without_engine_status_both_say_so(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "rules", "status")
    assert code == 1
    assert out == ""
    assert "no status from the engine: is it running?" in err
    code, _, err = cli(capsys, "rules", "trace", "x")
    assert code == 1
    assert "no status from the engine: is it running?" in err
