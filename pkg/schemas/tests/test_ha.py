"""Home Assistant's messages are read tolerantly (strictly in tests); ours are always strict."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ruby_schemas import StateChangedV1
from ruby_schemas.examples import examples
from ruby_schemas.ha import HaEvent, HaState, HaStateChangedEvent, strict_ha

CONTEXT = {"id": "01HXA9Z5J8K2M4N6P8Q0R2S4T6", "parent_id": None, "user_id": None}
STATE: dict[str, Any] = {
    "entity_id": "light.kitchen",
    "state": "on",
    "attributes": {"brightness": 204, "friendly_name": "Kitchen"},
    "last_changed": "2024-05-01T18:30:00.123456+00:00",
    "last_reported": "2024-05-01T18:30:00.123456+00:00",
    "last_updated": "2024-05-01T18:30:00.123456+00:00",
    "context": CONTEXT,
}
# A state_changed event exactly as Home Assistant 2024.x sends it in `subscribe_events`.
EVENT: dict[str, Any] = {
    "event_type": "state_changed",
    "data": {"entity_id": "light.kitchen", "old_state": None, "new_state": STATE},
    "origin": "LOCAL",
    "time_fired": "2024-05-01T18:30:00.123456+00:00",
    "context": CONTEXT,
}


def _with_unknown_fields() -> dict[str, Any]:
    event = copy.deepcopy(EVENT)
    event["from_the_future"] = True
    event["data"]["new_state"]["context"] = {**CONTEXT, "origin_event": "x"}
    return event


def test_real_home_assistant_event_is_accepted_strictly() -> None:
    with strict_ha():
        event = HaStateChangedEvent.model_validate(EVENT)
    assert event.data.new_state is not None
    assert event.data.new_state.attributes["brightness"] == 204
    assert event.time_fired == datetime(2024, 5, 1, 18, 30, 0, 123456, tzinfo=UTC)


def test_unknown_fields_are_ignored_by_default() -> None:
    event = HaStateChangedEvent.model_validate(_with_unknown_fields())
    assert "from_the_future" not in event.model_dump()


def test_strict_ha_reports_every_unknown_field_at_its_path() -> None:
    with strict_ha(), pytest.raises(ValidationError) as caught:
        HaStateChangedEvent.model_validate(_with_unknown_fields())
    errors = {(e["type"], e["loc"]) for e in caught.value.errors()}
    assert errors == {
        ("extra_forbidden", ("from_the_future",)),
        ("extra_forbidden", ("data", "new_state", "context", "origin_event")),
    }


def test_strict_ha_reports_unknown_and_invalid_fields_together() -> None:
    event = _with_unknown_fields()
    event["data"]["new_state"]["entity_id"] = "not an entity id"
    with strict_ha(), pytest.raises(ValidationError) as caught:
        HaStateChangedEvent.model_validate_json(json.dumps(event))
    errors = {(e["type"], e["loc"]) for e in caught.value.errors()}
    assert errors == {
        ("extra_forbidden", ("from_the_future",)),
        ("extra_forbidden", ("data", "new_state", "context", "origin_event")),
        ("string_pattern_mismatch", ("data", "new_state", "entity_id")),
    }


def test_strict_ha_ends_with_its_block() -> None:
    with strict_ha():
        pass
    HaEvent.model_validate({**EVENT, "unexpected": 1})


async def test_strict_ha_is_per_task() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def strict_task() -> None:
        with strict_ha():
            entered.set()
            await release.wait()

    task = asyncio.create_task(strict_task())
    await entered.wait()
    HaEvent.model_validate({**EVENT, "unexpected": 1})  # this task is not strict
    release.set()
    await task


def test_home_assistant_models_are_frozen() -> None:
    state = HaState.model_validate(STATE)
    with pytest.raises(ValidationError, match="frozen"):
        state.state = "off"  # type: ignore[misc]


def test_home_assistant_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        HaState.model_validate({**STATE, "last_changed": "2024-05-01T18:30:00"})


def test_our_models_refuse_unknown_fields_outside_strict_ha() -> None:
    document = examples()["ha.state_changed.v1"].model_dump()
    StateChangedV1.model_validate(document)
    with pytest.raises(ValidationError) as caught:
        StateChangedV1.model_validate({**document, "from_the_future": True})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("from_the_future",)


def test_state_changed_event_becomes_our_payload() -> None:
    payload = HaStateChangedEvent.model_validate(EVENT).to_payload(reconciled=True)
    assert payload.entity_id == "light.kitchen"
    assert payload.old_state is None
    assert payload.new_state is not None
    assert payload.new_state.state == "on"
    assert payload.context_id == CONTEXT["id"]
    assert payload.reconciled is True


def test_other_event_becomes_our_payload() -> None:
    raw = {**EVENT, "event_type": "zha_event", "data": {"command": "on"}}
    payload = HaEvent.model_validate(raw).to_payload()
    assert payload.event_type == "zha_event"
    assert payload.data == {"command": "on"}
    assert payload.context_id == CONTEXT["id"]
