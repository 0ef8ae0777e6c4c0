"""`rubyctl audit query | verify | why`: real stores, a real installation, no mocks."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nats.aio.client import Client

from ruby_auditstore import AuditStore
from ruby_ctl.cli import main
from ruby_ctl.testing import Installation
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.topology import AUDIT_SINK, EVENTS, GATEWAY, PROJECTION, STATUS
from ruby_schemas.audit import AuditOutcome, AuditRecordV1
from ruby_schemas.envelope import make_envelope
from ruby_schemas.ha_events import EntityState, StateChangedV1
from ruby_schemas.registry import encode

T = TypeVar("T")
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
VERSION = "37d1f5a2bb041ea9"  # pragma: allowlist secret (a rule version, not a secret)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def record(record_id: str, at: datetime, **fields: Any) -> AuditRecordV1:
    values: dict[str, Any] = {
        "record_id": record_id,
        "actor": "service:gateway",
        "action": "command.executed",
        "target": "light.turn_on",
        "outcome": AuditOutcome.SUCCEEDED,
        "reason": "home assistant accepted the call",
        "correlation_id": f"corr-{record_id}",
        "occurred_at": at,
    }
    values.update(fields)
    return AuditRecordV1.model_validate(values)


def executed(n: int, command_id: str, context_id: str, at: datetime) -> AuditRecordV1:
    """What the gateway records when Home Assistant ran a command."""
    return record(
        f"audit.cmd.{command_id}",
        at,
        causation_id=command_id,
        details={"command_id": command_id, "ha_context_id": context_id},
        correlation_id=f"corr-{n}",
    )


def fired(
    rule_id: str, command_ids: list[str], trigger: str, at: datetime, run: str
) -> AuditRecordV1:
    """What the engine records when a rule ran."""
    return record(
        f"audit-fired-{run}",
        at,
        actor="service:engine",
        action="rule.fired",
        target=f"rule:{rule_id}",
        reason="",
        correlation_id=trigger,
        details={
            "rule_version": VERSION,
            "run_id": run,
            "trigger_event_id": trigger,
            "command_ids": command_ids,
        },
    )


def store_of(path: Path, records: list[AuditRecordV1]) -> Path:
    with AuditStore(path) as store:
        store.append(records)
    return path


def tamper(path: Path, *statements: str) -> None:
    """What someone with the file does: drop the triggers, change rows."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("DROP TRIGGER audit_no_delete")
        for statement in statements:
            db.execute(statement)
    db.close()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUBY_TIMEZONE", "UTC")
    monkeypatch.delenv("RUBY_AUDIT_DB", raising=False)


@pytest.fixture
def ten(tmp_path: Path) -> Path:
    """A store of ten records: gateway commands and engine rule runs, a second apart."""
    records = []
    for i in range(1, 11):
        at = T0 + timedelta(seconds=i)
        if i % 2:
            records.append(executed(i, f"cmd-{i}", f"ctx-{i}", at))
        else:
            records.append(fired(f"rule_{i % 3}", [f"cmd-{i - 1}"], f"ha.x.y.{i}", at, f"r{i}"))
    return store_of(tmp_path / "audit.db", records)


# --- query ---------------------------------------------------------------------------------


def test_query_prints_a_table_of_matching_records(
    ten: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "audit", "query", "--db", str(ten))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON", "CORRELATION",
    ]  # fmt: skip
    assert lines[1].split() == [
        "1", "2026-11-20", "18:00:01", "service:gateway", "command.executed", "light.turn_on",
        "succeeded", "home", "assistant", "accepted", "the", "call", "corr-1",
    ]  # fmt: skip
    assert lines[2].split()[3:6] == ["service:engine", "rule.fired", "rule:rule_2"]
    assert lines[2].split()[7] == "-"  # no reason
    assert lines[-1] == "10 record(s)"

    code, out, _ = cli(
        capsys, "audit", "query", "--db", str(ten), "--action", "rule.*", "--target", "rule:rule_1"
    )
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["4", "10"]

    code, out, _ = cli(
        capsys, "audit", "query", "--db", str(ten), "--actor", "service:gateway",
        "--since", "2026-11-20T18:00:04", "--until", "2026-11-20T18:00:08Z",
    )  # fmt: skip
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["5", "7"]

    code, out, _ = cli(capsys, "audit", "query", "--db", str(ten), "--correlation", "corr-3")
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["3"]

    code, out, _ = cli(capsys, "audit", "query", "--db", str(ten), "--limit", "3")
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["8", "9", "10"]

    code, out, _ = cli(capsys, "audit", "query", "--db", str(ten), "--since", "1h")
    assert out.splitlines() == [out.splitlines()[0], "0 record(s)"]  # T0 is long ago


def test_query_json_prints_each_record_with_its_place_in_the_chain(
    ten: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "audit", "query", "--db", str(ten), "--action", "rule.fired",
                       "--limit", "1", "--json")  # fmt: skip
    assert code == 0
    [line] = out.splitlines()
    got = json.loads(line)
    assert got["seq"] == 10
    assert len(got["hash"]) == 64
    with AuditStore(ten, readonly=True) as store:
        assert got["hash"] == store.head()[1]
    assert got["record_id"] == "audit-fired-r10"
    assert got["details"]["command_ids"] == ["cmd-9"]
    assert got["occurred_at"].startswith("2026-11-20T18:00:10")
    assert AuditRecordV1.model_validate(
        {k: v for k, v in got.items() if k not in ("seq", "hash", "stored_at")}
    ) == fired("rule_1", ["cmd-9"], "ha.x.y.10", T0 + timedelta(seconds=10), "r10")


def test_a_missing_store_and_a_bad_time_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUBY_STATE_DIR", str(tmp_path))
    for verb in (["query"], ["verify", "--no-head"], ["why", "light.x", "--context", "c"]):
        code, out, err = cli(capsys, "audit", *verb)
        assert code == 1
        assert out == ""
        assert f"no audit store at {tmp_path / 'audit' / 'audit.db'}" in err
    with pytest.raises(SystemExit):
        main(["audit", "query", "--since", "yesterday"])
    assert "neither a duration" in capsys.readouterr().err


# --- verify --------------------------------------------------------------------------------


def test_verify_passes_a_sound_chain(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "verify", "--db", str(ten), "--no-head")
    assert code == 0, err
    with AuditStore(ten, readonly=True) as store:
        seq, digest = store.head()
    assert out == f"ok: 10 records, head {seq} {digest[:16]}\n"


@pytest.mark.parametrize(
    ("statements", "broken", "why"),
    [
        (
            ["UPDATE audit_records SET record = replace(record, 'accepted', 'refused') "
             "WHERE seq = 5"],
            "record 5 (audit.cmd.cmd-5)",
            "the record was edited",
        ),
        (
            ["DELETE FROM audit_records WHERE seq = 7"],
            "record 8 (audit-fired-r8)",
            "record 7 is missing",
        ),
        (
            ["UPDATE audit_records SET seq = -1 WHERE seq = 3",
             "UPDATE audit_records SET seq = 3 WHERE seq = 4",
             "UPDATE audit_records SET seq = 4 WHERE seq = -1"],
            "record 3 (audit-fired-r4)",
            "reordered",
        ),
    ],
    ids=["edited", "deleted", "reordered"],
)  # fmt: skip
def test_verify_names_the_first_record_that_breaks_the_chain(
    ten: Path, capsys: pytest.CaptureFixture[str], statements: list[str], broken: str, why: str
) -> None:
    tamper(ten, *statements)
    code, out, _ = cli(capsys, "audit", "verify", "--db", str(ten), "--no-head")
    assert code == 1
    assert out.startswith(f"broken at {broken}: ")
    assert why in out


class Live:
    """The session's secured installation; commands run as the operator."""

    def __init__(self, installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
        self.installation = installation
        self.subjects = installation.subjects
        self.topo = installation.topology
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

    def put(self, logical: str, key: str, value: dict[str, Any], identity: str) -> None:
        """Write a KV key as the service that owns it."""

        async def put(nc: Client) -> None:
            kv = await nc.jetstream().key_value(self.topo.bucket(logical).bucket)
            await kv.put(key, json.dumps(value).encode())

        self.run(put, identity=identity)

    def publish_head(self, seq: int, digest: str) -> None:
        now = datetime.now(UTC).isoformat()
        self.put(STATUS, f"{AUDIT_SINK}.head", {"seq": seq, "hash": digest, "updated": now},
                 identity=AUDIT_SINK)  # fmt: skip

    def publish_change(
        self, entity_id: str, old: str | None, new: str, context_id: str, at: datetime
    ) -> str:
        """Publish a state change to EVENTS as the gateway would; return its envelope id."""
        event_id = f"ha.{entity_id}.{at.isoformat()}"
        change = StateChangedV1(
            entity_id=entity_id,
            old_state=None if old is None else EntityState(state=old, last_changed=at,
                                                            last_updated=at),
            new_state=EntityState(state=new, last_changed=at, last_updated=at),
            context_id=context_id,
        )  # fmt: skip
        envelope = make_envelope(change, source="ruby/gateway", time=at, message_id=event_id)

        async def publish(nc: Client) -> None:
            await nc.jetstream().publish(
                self.subjects.ha_state(entity_id),
                encode(envelope),
                headers={"Nats-Msg-Id": event_id},
                stream=self.topo.stream(EVENTS).name,
            )

        self.run(publish)
        return event_id


@pytest.fixture
def live(installation: Installation, monkeypatch: pytest.MonkeyPatch) -> Live:
    return Live(installation, monkeypatch)


def test_verify_compares_the_store_with_the_head_the_sink_published(
    live: Live, ten: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditStore(ten, readonly=True) as store:
        digests = {s.seq: s.hash for s in store.query()}

    live.publish_head(10, digests[10])
    code, out, err = cli(capsys, "audit", "verify", "--db", str(ten))
    assert code == 0, err
    assert out.splitlines()[0] == f"ok: 10 records, head 10 {digests[10][:16]}"
    assert out.splitlines()[1].startswith("the head the sink published matches (record 10, ")

    live.publish_head(8, digests[8])  # the sink lags behind its store: nothing wrong
    code, out, _ = cli(capsys, "audit", "verify", "--db", str(ten))
    assert code == 0
    assert "matches (record 8" in out

    live.publish_head(10, digests[10])
    tamper(ten, "DELETE FROM audit_records WHERE seq > 8")  # the end cut off: still a chain
    code, out, _ = cli(capsys, "audit", "verify", "--db", str(ten), "--no-head")
    assert code == 0
    assert out.startswith("ok: 8 records, head 8 ")
    code, out, _ = cli(capsys, "audit", "verify", "--db", str(ten))
    assert code == 1
    assert out.startswith("broken at record 9: missing: rows were removed from the end ")
    assert f"the sink published record 10 with hash {digests[10][:16]}" in out

    other = store_of(tmp_path / "other.db", [executed(i, f"c{i}", f"x{i}", T0) for i in range(10)])
    code, out, _ = cli(capsys, "audit", "verify", "--db", str(other))
    assert code == 1
    assert out.startswith("broken at record 10 (audit.cmd.c9): differs from the head the sink ")


def test_verify_says_when_the_published_head_is_not_the_contract(
    live: Live, ten: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live.put(STATUS, f"{AUDIT_SINK}.head", {"seq": "ten", "hash": 10}, identity=AUDIT_SINK)
    code, out, err = cli(capsys, "audit", "verify", "--db", str(ten))
    assert code == 0
    assert out.startswith("ok: 10 records, head 10 ")
    assert err.splitlines() == [
        "rubyctl audit verify: status key 'audit_sink.head' is unreadable: seq: Input should be "
        "a valid integer; hash: Input should be a valid string; updated: Field required; "
        "verifying the file alone (removed last records would go unnoticed)"
    ]


def test_verify_without_the_stack_checks_the_file_alone(
    live: Live, ten: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("RUBY_VAULT_ADDR", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("RUBY_VAULT_ATTEMPTS", "1")
    code, out, err = cli(capsys, "audit", "verify", "--db", str(ten))
    assert code == 0
    assert out.startswith("ok: 10 records, head 10 ")
    assert "unreachable" in err
    assert "verifying the file alone" in err


# --- why -----------------------------------------------------------------------------------


def test_why_follows_the_light_back_to_the_motion_that_fired_the_rule(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    light, motion = f"light.hallway_{tag}", f"binary_sensor.motion_{tag}"
    now = datetime.now(UTC).replace(microsecond=0)
    t_motion, t_light, t_later = now - timedelta(seconds=30), now - timedelta(seconds=29), now

    trigger = live.publish_change(motion, "off", "on", f"person-{tag}", t_motion)
    live.publish_change(motion, "on", "off", f"person2-{tag}", t_later)  # not the last one now
    context = f"01J{tag}CTX"
    live.put(
        PROJECTION,
        light,
        {"state": "on", "attributes": {}, "last_changed": t_light.isoformat(),
         "last_updated": t_light.isoformat(), "context_id": context},
        identity=GATEWAY,
    )  # fmt: skip
    command = f"cmd-{tag}"
    db = store_of(
        tmp_path / "audit.db",
        [
            executed(0, "cmd-other", "ctx-other", t_motion),
            fired("hallway_light_on", [command], trigger, t_motion, f"run-{tag}"),
            executed(1, command, context, t_light),
        ],
    )

    code, out, err = cli(capsys, "audit", "why", light, "--db", str(db))
    assert code == 0, err
    assert out.splitlines() == [
        f"{light} is on since {t_light:%Y-%m-%d %H:%M:%S} (context {context})",
        f"  <- command {command} light.turn_on executed at {t_light:%Y-%m-%d %H:%M:%S} "
        "by service:gateway",
        f"  <- rule hallway_light_on (version {VERSION}) fired at {t_motion:%Y-%m-%d %H:%M:%S}",
        f"  <- {motion} changed off -> on at {t_motion:%Y-%m-%d %H:%M:%S} (event {trigger})",
    ]

    code, out, _ = cli(capsys, "audit", "why", light, "--db", str(db), "--json")
    got = json.loads(out)
    assert got["caused_by_ruby_core"] is True
    assert got["complete"] is True
    assert got["end"] is None
    assert [link["link"] for link in got["chain"]] == ["state", "command", "rule", "state"]
    assert got["chain"][1]["command_id"] == command
    assert got["chain"][2] | {"fired_at": None} == {
        "link": "rule", "rule_id": "hallway_light_on", "rule_version": VERSION,
        "fired_at": None, "trigger_event_id": trigger, "run_id": f"run-{tag}",
        "correlation_id": trigger, "record_id": f"audit-fired-run-{tag}", "seq": 2,
    }  # fmt: skip
    assert got["chain"][3]["context_id"] == f"person-{tag}"
    assert got["chain"][3]["old_state"] == "off"

    # The same chain from a context id given by hand.
    code, out, _ = cli(capsys, "audit", "why", light, "--db", str(db), "--context", context)
    assert out.splitlines()[0] == f"{light} (context {context})"
    assert out.splitlines()[3].endswith(f"(event {trigger})")


def test_why_says_when_ruby_core_did_not_change_the_entity_or_a_link_is_missing(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    lamp, switch = f"light.desk_{tag}", f"switch.fan_{tag}"
    at = datetime.now(UTC).replace(microsecond=0)
    for entity, context in ((lamp, f"hand-{tag}"), (switch, f"fan-{tag}")):
        live.put(
            PROJECTION,
            entity,
            {"state": "on", "attributes": {}, "last_changed": at.isoformat(),
             "last_updated": at.isoformat(), "context_id": context},
            identity=GATEWAY,
        )  # fmt: skip
    db = store_of(
        tmp_path / "audit.db",
        [
            executed(1, f"cmd-fan-{tag}", f"fan-{tag}", at),  # a command no rule claims
            fired("gone", [f"cmd-old-{tag}"], f"ha.sensor.old_{tag}.{at.isoformat()}", at, "x"),
            executed(2, f"cmd-old-{tag}", f"old-{tag}", at),
        ],
    )

    code, out, err = cli(capsys, "audit", "why", lamp, "--db", str(db))
    assert code == 0, err
    assert out.splitlines() == [
        f"{lamp} is on since {at:%Y-%m-%d %H:%M:%S} (context hand-{tag})",
        f"  <- not changed by Ruby Core: no command was executed with context hand-{tag} "
        "(a person, a device or Home Assistant itself changed it)",
    ]
    code, out, _ = cli(capsys, "audit", "why", lamp, "--db", str(db), "--json")
    got = json.loads(out)
    assert (got["caused_by_ruby_core"], got["complete"]) == (False, True)
    assert got["end"].startswith("not changed by Ruby Core")

    code, out, _ = cli(capsys, "audit", "why", switch, "--db", str(db))
    assert code == 0
    assert out.splitlines()[-1] == (
        f"  <- chain ends: no rule.fired record lists command cmd-fan-{tag}: no rule sent it, "
        "or the engine's record has not reached the store yet"
    )

    # The triggering event is not (any more) in EVENTS: said, and the chain stops there.
    code, out, _ = cli(capsys, "audit", "why", lamp, "--db", str(db), "--context", f"old-{tag}")
    assert code == 0
    lines = out.splitlines()
    assert lines[3].startswith(f"  <- sensor.old_{tag} changed at ")
    assert lines[3].endswith("; not in EVENTS any more)")
    assert lines[4].startswith(f"  <- chain ends: event ha.sensor.old_{tag}.")

    code, _, err = cli(capsys, "audit", "why", f"light.nope_{tag}", "--db", str(db))
    assert code == 1
    assert f"the gateway's projection has no entity light.nope_{tag}" in err
    code, _, err = cli(capsys, "audit", "why", "not-an-entity", "--db", str(db))
    assert code == 2
    assert "is not of the form 'domain.object_id'" in err


def test_why_follows_a_change_a_rule_caused_to_the_rule_that_caused_it(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    motion, fan, light = f"binary_sensor.m_{tag}", f"switch.fan_{tag}", f"light.l_{tag}"
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    first = live.publish_change(motion, "off", "on", f"person-{tag}", t)
    second = live.publish_change(fan, "off", "on", f"fan-ctx-{tag}", t + timedelta(seconds=1))
    live.put(
        PROJECTION,
        light,
        {"state": "on", "attributes": {}, "last_changed": t.isoformat(),
         "last_updated": t.isoformat(), "context_id": f"light-ctx-{tag}"},
        identity=GATEWAY,
    )  # fmt: skip
    db = store_of(
        tmp_path / "audit.db",
        [
            fired("fan_on", [f"cmd-a-{tag}"], first, t, "a"),
            executed(1, f"cmd-a-{tag}", f"fan-ctx-{tag}", t),
            fired("light_after_fan", [f"cmd-b-{tag}"], second, t, "b"),
            executed(2, f"cmd-b-{tag}", f"light-ctx-{tag}", t),
        ],
    )
    code, out, err = cli(capsys, "audit", "why", light, "--db", str(db), "--json")
    assert code == 0, err
    chain = json.loads(out)["chain"]
    assert [(link["link"], link.get("entity_id") or link.get("rule_id")) for link in chain] == [
        ("state", light), ("command", None), ("rule", "light_after_fan"), ("state", fan),
        ("command", None), ("rule", "fan_on"), ("state", motion),
    ]  # fmt: skip
    assert [link["command_id"] for link in chain if link["link"] == "command"] == [
        f"cmd-b-{tag}",
        f"cmd-a-{tag}",
    ]
