"""Timer record contracts: a variant per kind; the old single record's empty leftovers drop."""

from __future__ import annotations

import json

import pytest

from ruby_schemas.timers import AtTimer, TimerRecordError, read_timer, timer_json

OLD_AT = {
    "kind": "at", "rule_id": "q", "deadline": "2026-11-20T22:00:00+00:00",
    "trigger": {"kind": "time", "id": "1", "event_id": "at.q.1.2026-11-20T22:00:00+00:00",
                "time": "2026-11-20T22:00:00+00:00", "entity_id": None, "from_state": None,
                "to_state": None, "event_type": None, "event_data": {}, "correlation_id": None},
    # pragma: allowlist nextline secret (a rule version and a trigger hash)
    "version": "be45d1a12f0bd6c6", "trigger_index": 1, "trigger_hash": "53bb5e13cdf06970",
    "entity_id": None, "run_id": None, "status": "waiting", "resume_after": None, "wait": False,
    "wait_until_time": False, "queued_seq": 0, "file": "q.yaml", "steps": [], "rule": None,
}  # fmt: skip


def test_the_old_single_record_reads_as_its_variant_and_writes_only_its_fields() -> None:
    record = read_timer(json.dumps(OLD_AT).encode())
    assert isinstance(record, AtTimer)
    written = json.loads(timer_json(record))
    assert sorted(written) == ["deadline", "file", "kind", "rule_id", "trigger",
                               "trigger_hash", "trigger_index", "version"]  # fmt: skip
    assert {key: OLD_AT[key] for key in written if key != "trigger"} == {
        key: value for key, value in written.items() if key != "trigger"
    }
    assert written["trigger"]["time"] == "2026-11-20T22:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"run_id": "r-1"}, "run_id"), ({"status": "queued"}, "status"), ({"kind": "x"}, "kind")],
)
def test_a_leftover_with_a_value_or_an_unknown_kind_is_refused(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(TimerRecordError, match=field):
        read_timer(json.dumps({**OLD_AT, **change}).encode())
