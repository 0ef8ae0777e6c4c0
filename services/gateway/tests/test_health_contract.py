"""What the gateway writes to its status key is a `GatewayRecord`, and what ``/readyz`` answers
a `GatewayReadiness` (the readers' contracts, in ``ruby_schemas.status``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from nats.aio.client import Client

from ruby_gateway.bridge import BridgeStatus
from ruby_gateway.ha_events import HaEventsStatus
from ruby_gateway.health import readiness, status_record
from ruby_schemas.status import GatewayReadiness, GatewayRecord, HaEventsRecord, read_record

T0 = datetime(2026, 12, 4, 7, 2, 33, 123456, tzinfo=UTC)


def live_status() -> BridgeStatus:
    return BridgeStatus(
        connected=True,
        connected_since=T0,
        last_event_at=T0,
        events_published=10,
        reconciled_published=2,
        reconnects=1,
        sessions=2,
        projection_loaded=True,
        auth_failures=3,
        skipped_seen=4,
        backlog_overflows=5,
        ha_events=HaEventsStatus(
            wanted=("doorbell",), refused=("bad type",), subscribed=("doorbell",), forwarded=6
        ),
    )


def test_every_live_counter_is_in_the_contract() -> None:
    """Readers ignore unknown fields, so a counter added to the live status but not to the
    contract would be dropped from the record without a word: this keeps them in step."""
    live = {f.name for f in dataclasses.fields(BridgeStatus)}
    assert live == set(GatewayRecord.model_fields) - {"ready", "updated"}
    assert {f.name for f in dataclasses.fields(HaEventsStatus)} == set(HaEventsRecord.model_fields)


def test_the_record_written_reads_back_with_every_value() -> None:
    status = live_status()
    before = datetime.now(UTC)
    record = read_record(GatewayRecord, status_record(status).model_dump_json(), key="gateway")
    assert record.ready is True
    assert record.updated is not None
    assert record.updated >= before
    assert record.model_dump(exclude={"ready", "updated"}) == dataclasses.asdict(status)


def test_the_record_is_not_ready_without_home_assistant_or_the_projection_or_once_stopped() -> None:
    assert status_record(live_status(), stopped=True).ready is False
    assert status_record(dataclasses.replace(live_status(), connected=False)).ready is False
    assert status_record(dataclasses.replace(live_status(), projection_loaded=False)).ready is False
    assert status_record(BridgeStatus()).ready is False


def test_readyz_answers_each_check_by_name() -> None:
    nc = Client()  # never connected: the NATS check fails
    body = readiness(live_status(), nc)
    answered = read_record(GatewayReadiness, body.model_dump_json(), key="/readyz")
    assert answered.ready is False
    assert (answered.checks.home_assistant, answered.checks.nats) == (True, False)
    assert answered.checks.projection is True
