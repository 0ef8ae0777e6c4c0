"""Status records are contracts: each round-trips through the JSON its writer writes, the records
services wrote before issue 13 still read, and a record that is not its contract is refused
with an error naming the key and the fields (never their values)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ruby_schemas.status import (
    AuditHeadRecord,
    AuditSinkRecord,
    EngineRecord,
    GatewayReadiness,
    GatewayRecord,
    HaEventsRecord,
    ReadinessChecks,
    RuleRow,
    RulesRecord,
    ServiceRecord,
    StatusRecord,
    StatusRecordError,
    read_record,
)

T0 = datetime(2026, 12, 4, 7, 2, 33, 123456, tzinfo=UTC)

RULE = RuleRow(
    file="hallway.yaml",
    where="hallway.yaml:3:5",
    version="0123456789abcdef",
    mode="restart",
    runs=7,
    failed=1,
    last_status="not_run",
    last_reason="condition 0 (state) false",
    last_run=T0,
)
HA_EVENTS = HaEventsRecord(
    wanted=("doorbell",),
    refused=("bad type",),
    subscribed=("doorbell",),
    forwarded=3,
    lost=0,
    skipped=1,
)
RECORDS: dict[str, StatusRecord] = {
    "engine": EngineRecord(ready=True, updated=T0, rules=2, timers=1, refused_files=("b.yaml",)),
    "engine.rules": RulesRecord(
        updated=T0,
        rules={
            "x": RULE,
            "never_ran": RULE.model_copy(update={"runs": 0, "failed": 0, "last_run": None}),
        },
        refused_files={"b.yaml": ("b.yaml:5:15: rule 'b': triggers[0]: unknown kind",)},
    ),
    "audit_sink": AuditSinkRecord(
        ready=False, updated=T0, stored=600, head_seq=600, head_hash="ab" * 32, db="/x/audit.db"
    ),
    "audit_sink.head": AuditHeadRecord(seq=600, hash="ab" * 32, updated=T0),
    "gateway": GatewayRecord(
        ready=True,
        updated=T0,
        connected=True,
        connected_since=T0 - timedelta(hours=1),
        last_event_at=None,
        events_published=10,
        reconciled_published=2,
        reconnects=1,
        sessions=2,
        projection_loaded=True,
        auth_failures=0,
        skipped_seen=3,
        backlog_overflows=0,
        ha_events=HA_EVENTS,
    ),
    "/readyz": GatewayReadiness(
        ready=False, checks=ReadinessChecks(home_assistant=False, nats=True, projection=True)
    ),
}


@pytest.mark.parametrize("key", list(RECORDS))
def test_every_record_round_trips_through_the_json_its_writer_writes(key: str) -> None:
    record = RECORDS[key]
    written = record.model_dump_json()
    assert read_record(type(record), written, key=key) == record
    assert read_record(type(record), written.encode(), key=key) == record


# Records exactly as the services wrote them before issue 13 (json.dumps of dicts, times from
# `datetime.isoformat()`, a rule that never ran with "" for its last run, no `ready` or
# `updated` in the gateway's record).
TODAY: dict[str, tuple[type[StatusRecord], str]] = {
    "engine": (
        EngineRecord,
        '{"ready": true, "updated": "2026-12-04T07:02:33.123456+00:00", "rules": 2, '
        '"timers": 1, "refused_files": ["b.yaml"]}',
    ),
    "engine.rules": (
        RulesRecord,
        '{"updated": "2026-12-04T07:02:33.123456+00:00", "rules": {"x": {"file": "hallway.yaml",'
        ' "where": "hallway.yaml:3:5", "version": "0123456789abcdef", "mode": "restart", '
        '"runs": 7, "failed": 1, "last_status": "not_run", "last_reason": "condition 0 (state) '
        'false", "last_run": "2026-12-04T07:02:33.123456+00:00"}, "never_ran": {"file": '
        '"hallway.yaml", "where": "hallway.yaml:3:5", "version": "0123456789abcdef", "mode": '
        '"restart", "runs": 0, "failed": 0, "last_status": "not_run", "last_reason": "condition'
        ' 0 (state) false", "last_run": ""}}, "refused_files": {"b.yaml": ["b.yaml:5:15: rule '
        "'b': triggers[0]: unknown kind\"]}}",
    ),
    "audit_sink": (
        AuditSinkRecord,
        '{"ready": false, "updated": "2026-12-04T07:02:33.123456+00:00", "stored": 600, '
        f'"head_seq": 600, "head_hash": "{"ab" * 32}", "db": "/x/audit.db"}}',
    ),
    "audit_sink.head": (
        AuditHeadRecord,
        f'{{"seq": 600, "hash": "{"ab" * 32}", "updated": "2026-12-04T07:02:33.123456+00:00"}}',
    ),
}


@pytest.mark.parametrize("key", list(TODAY))
def test_a_record_written_before_the_contract_still_reads(key: str) -> None:
    model, raw = TODAY[key]
    assert read_record(model, raw, key=key) == RECORDS[key]


def test_a_gateway_record_written_before_the_contract_reads_as_not_ready() -> None:
    expected = RECORDS["gateway"]
    assert isinstance(expected, GatewayRecord)
    old = json.loads(expected.model_dump_json(exclude={"ready", "updated"}))
    old["connected_since"] = (T0 - timedelta(hours=1)).isoformat()
    record = read_record(GatewayRecord, json.dumps(old), key="gateway")
    assert record == expected.model_copy(update={"ready": False, "updated": None})


def test_a_reader_ignores_a_field_a_newer_writer_added() -> None:
    written = json.loads(RECORDS["engine"].model_dump_json())
    written["added_later"] = {"anything": [1, 2]}
    assert read_record(EngineRecord, json.dumps(written), key="engine") == RECORDS["engine"]


def test_every_service_record_says_whether_ready_and_when() -> None:
    """What readiness checks read from any service's own record."""
    for key in ("engine", "audit_sink"):
        record = read_record(ServiceRecord, RECORDS[key].model_dump_json(), key=key)
        assert record.updated == T0
    assert read_record(ServiceRecord, RECORDS["gateway"].model_dump_json(), key="gateway").ready


def _refusal(model: type[StatusRecord], raw: str | bytes, key: str = "engine.rules") -> str:
    with pytest.raises(StatusRecordError) as caught:
        read_record(model, raw, key=key)
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"status key {key!r} is unreadable: ")
    return message


def _rules_with(**row: object) -> str:
    written = json.loads(RECORDS["engine.rules"].model_dump_json())
    written["rules"]["x"].update(row)
    return json.dumps(written)


@pytest.mark.parametrize(
    ("row", "path", "why"),
    [
        ({"runs": "7"}, "rules.x.runs", "valid integer"),  # strict: text is not a count
        ({"runs": -1}, "rules.x.runs", "greater than or equal to 0"),
        ({"failed": 1.5}, "rules.x.failed", "valid integer"),
        ({"last_run": 1733295753}, "rules.x.last_run", "ISO 8601 time or null"),
        ({"last_run": "2026-12-04T07:02:33"}, "rules.x.last_run", "timezone"),
        ({"mode": None}, "rules.x.mode", "valid string"),
    ],
)
def test_a_record_that_is_not_the_contract_is_refused_naming_the_field(
    row: dict[str, object], path: str, why: str
) -> None:
    message = _refusal(RulesRecord, _rules_with(**row))
    assert f"{path}: " in message
    assert why in message


def test_a_missing_field_is_refused_and_each_offence_is_named() -> None:
    written = json.loads(RECORDS["engine.rules"].model_dump_json())
    del written["rules"]["x"]["runs"]
    del written["refused_files"]
    message = _refusal(RulesRecord, json.dumps(written))
    assert "rules.x.runs: Field required" in message
    assert "refused_files: Field required" in message


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        (b"[]", "an object"),
        (b"null", "an object"),
        (b"[" * 10_000, "Invalid JSON"),
        ('{"seq": 1, "hash": "\ud800"}', "unicode"),
    ],
)
def test_what_is_not_a_record_at_all_is_refused_as_a_whole(raw: bytes | str, why: str) -> None:
    message = _refusal(AuditHeadRecord, raw, key="audit_sink.head")
    assert "unreadable: <record>: " in message
    assert why in message


def test_a_refusal_never_repeats_the_offending_value() -> None:
    hostile = "s3cr3t-token\n\x1b[31mred"
    message = _refusal(RulesRecord, _rules_with(runs=hostile, last_run=hostile))
    assert "s3cr3t" not in message
    assert "\n" not in message
    assert "\x1b" not in message
    written = json.loads(RECORDS["engine.rules"].model_dump_json())
    written["rules"][hostile] = 5  # a hostile key is quoted, escaped
    message = _refusal(RulesRecord, json.dumps(written))
    assert "rules['s3cr3t-token\\n\\x1b[31mred']" in message
    assert "\x1b" not in message


def test_records_are_immutable() -> None:
    record = RECORDS["audit_sink.head"]
    assert isinstance(record, AuditHeadRecord)
    with pytest.raises(ValueError, match="frozen"):
        record.seq = 0  # type: ignore[misc]  # the point: assigning is refused
