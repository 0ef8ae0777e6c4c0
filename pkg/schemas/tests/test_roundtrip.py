"""Every contract survives encode → decode unchanged, and envelopes are built as promised."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ruby_schemas import REGISTRY, Payload, decode, encode, make_envelope
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, new_id
from ruby_schemas.examples import example_envelope, examples
from ruby_schemas.ha_events import StateChangedV1
from ruby_schemas.testing import any_envelope, envelopes

ROUNDTRIP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("message_type", list(REGISTRY))
def test_every_contract_round_trips_through_json(message_type: str) -> None:
    @ROUNDTRIP
    @given(envelopes(REGISTRY[message_type]))
    def round_trip(envelope: Envelope[Payload]) -> None:
        raw = encode(envelope)
        assert decode(raw) == envelope
        assert decode(raw.decode("utf-8")) == envelope
        assert encode(decode(raw)) == raw

    round_trip()


@settings(max_examples=20, deadline=None)
@given(any_envelope())
def test_any_envelope_draws_registered_contracts(envelope: Envelope[Payload]) -> None:
    assert isinstance(envelope.data, REGISTRY[envelope.type])


@pytest.mark.parametrize("message_type", list(REGISTRY))
def test_every_registered_type_has_a_valid_example(message_type: str) -> None:
    envelope = example_envelope(message_type)
    assert envelope.type == message_type
    assert decode(encode(envelope)) == envelope


def test_examples_cover_exactly_the_registry() -> None:
    assert set(examples()) == set(REGISTRY)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=64))
def test_dead_letter_keeps_any_bytes_exactly(body: bytes) -> None:
    letter = examples()["dlq.dead_letter.v1"]
    assert isinstance(letter, DeadLetterV1)
    envelope = make_envelope(
        letter.model_copy(update={"original_payload": body}), source="ruby/test"
    )
    decoded = decode(encode(envelope)).data
    assert isinstance(decoded, DeadLetterV1)
    assert decoded.original_payload == body


def test_dead_letter_payload_is_standard_base64_in_json() -> None:
    envelope = example_envelope("dlq.dead_letter.v1")
    document = json.loads(encode(envelope))
    assert document["data"]["original_payload"] == "//5ub3QganNvbg=="  # b"\xff\xfenot json"


def test_encode_is_compact_utf8_json() -> None:
    raw = encode(example_envelope("ha.state_changed.v1"))
    assert b": " not in raw
    assert b", " not in raw
    assert json.loads(raw)["type"] == "ha.state_changed.v1"


def test_times_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    envelope = make_envelope(
        examples()["rule.loaded.v1"],
        source="ruby/test",
        time=datetime(2024, 5, 1, 20, 0, tzinfo=paris),
    )
    assert envelope.time == datetime(2024, 5, 1, 18, 0, tzinfo=UTC)
    assert envelope.time.utcoffset() == timedelta(0)
    assert b'"time":"2024-05-01T18:00:00Z"' in encode(envelope)


def test_make_envelope_fills_type_id_time_and_starts_a_correlation() -> None:
    before = datetime.now(UTC)
    envelope = make_envelope(examples()["ha.state_changed.v1"], source="ruby/gateway")
    assert envelope.type == StateChangedV1.TYPE
    assert envelope.specversion == "1.0"
    assert envelope.correlation_id == envelope.id
    assert envelope.causation_id is None
    assert before <= envelope.time <= datetime.now(UTC)


def test_make_envelope_continues_the_run_of_its_cause() -> None:
    cause = make_envelope(examples()["ha.state_changed.v1"], source="ruby/gateway")
    effect = make_envelope(examples()["ha.call_service.v1"], source="ruby/engine", cause=cause)
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.id
    with pytest.raises(ValueError, match="either cause"):
        make_envelope(examples()["rule.fired.v1"], source="x", cause=cause, correlation_id="c")


def test_envelope_type_must_match_its_payload() -> None:
    payload = examples()["ha.state_changed.v1"]
    assert isinstance(payload, StateChangedV1)
    with pytest.raises(ValidationError, match="does not match"):
        Envelope[StateChangedV1](
            id="1",
            type="ha.event.v1",
            source="s",
            time=datetime.now(UTC),
            correlation_id="1",
            data=payload,
        )


def test_new_id_is_a_time_ordered_uuid7() -> None:
    first, second = new_id(), new_id()
    assert first != second
    parsed = uuid.UUID(first)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    millis = int(first.replace("-", "")[:12], 16)
    assert abs(millis / 1000 - datetime.now(UTC).timestamp()) < 5
    assert re.fullmatch(r"[0-9a-f-]{36}", first)


def test_our_models_are_frozen() -> None:
    payload = examples()["ha.state_changed.v1"]
    assert isinstance(payload, StateChangedV1)
    with pytest.raises(ValidationError, match="frozen"):
        payload.reconciled = True  # type: ignore[misc]
