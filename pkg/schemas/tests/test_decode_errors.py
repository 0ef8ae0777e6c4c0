"""A malformed message raises ContractError naming the offending field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ruby_schemas import ContractError, decode, encode
from ruby_schemas.examples import example_envelope

Document = dict[str, Any]


def _message(message_type: str, change: Callable[[Document], None]) -> bytes:
    document: Document = json.loads(encode(example_envelope(message_type)))
    change(document)
    return json.dumps(document).encode()


def _drop_entity_id(doc: Document) -> None:
    del doc["data"]["entity_id"]


def _drop_time(doc: Document) -> None:
    del doc["time"]


CASES: list[tuple[str, str, Callable[[Document], None], str]] = [
    ("missing payload field", "ha.state_changed.v1", _drop_entity_id, "data.entity_id"),
    ("missing envelope field", "ha.state_changed.v1", _drop_time, "time"),
    (
        "string for a bool",
        "ha.state_changed.v1",
        lambda d: d["data"].update(reconciled="yes"),
        "data.reconciled",
    ),
    (
        "string for an int (no coercion)",
        "cmd.outcome.v1",
        lambda d: d["data"].update(attempts="1"),
        "data.attempts",
    ),
    (
        "unknown enum value",
        "cmd.outcome.v1",
        lambda d: d["data"].update(outcome="maybe"),
        "data.outcome",
    ),
    (
        "bad entity id",
        "ha.state_changed.v1",
        lambda d: d["data"].update(entity_id="Light.Kitchen"),
        "data.entity_id",
    ),
    (
        "entity id without a domain",
        "ha.state_changed.v1",
        lambda d: d["data"].update(entity_id="kitchen"),
        "data.entity_id",
    ),
    (
        "bad entity id in a list",
        "ha.call_service.v1",
        lambda d: d["data"]["target"].update(entity_id=["light.ok", "light..bad"]),
        "data.target.entity_id[1]",
    ),
    (
        "naive envelope time",
        "ha.state_changed.v1",
        lambda d: d.update(time="2024-05-01T18:30:00"),
        "time",
    ),
    (
        "naive nested time",
        "ha.state_changed.v1",
        lambda d: d["data"]["new_state"].update(last_changed="2024-05-01T18:30:00"),
        "data.new_state.last_changed",
    ),
    ("extra envelope field", "rule.loaded.v1", lambda d: d.update(priority=1), "priority"),
    (
        "extra payload field",
        "rule.loaded.v1",
        lambda d: d["data"].update(priority=1),
        "data.priority",
    ),
    (
        "not base64",
        "dlq.dead_letter.v1",
        lambda d: d["data"].update(original_payload="not base64!"),
        "data.original_payload",
    ),
    (
        "empty rule error list",
        "rule.rejected.v1",
        lambda d: d["data"].update(errors=[]),
        "data.errors",
    ),
    ("wrong specversion", "rule.fired.v1", lambda d: d.update(specversion="0.3"), "specversion"),
    ("empty id", "rule.fired.v1", lambda d: d.update(id=""), "id"),
]


@pytest.mark.parametrize(
    ("message_type", "change", "path"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_invalid_field_is_named(
    message_type: str, change: Callable[[Document], None], path: str
) -> None:
    with pytest.raises(ContractError) as caught:
        decode(_message(message_type, change))
    assert caught.value.paths == (path,)
    assert caught.value.message_type == message_type
    assert f"{message_type}: {path}: " in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    def break_two(doc: Document) -> None:
        del doc["data"]["entity_id"]
        doc["time"] = "2024-05-01T18:30:00"

    with pytest.raises(ContractError) as caught:
        decode(_message("ha.state_changed.v1", break_two))
    assert set(caught.value.paths) == {"data.entity_id", "time"}


def test_unknown_type_is_refused() -> None:
    raw = _message("ha.state_changed.v1", lambda d: d.update(type="ha.state_changed.v9"))
    with pytest.raises(
        ContractError, match=r"unknown message type 'ha\.state_changed\.v9'"
    ) as caught:
        decode(raw)
    assert caught.value.paths == ("type",)


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00garbage", b"", b"{", b'{"type": NaN}', "not json"],
    ids=["non-utf8 bytes", "empty", "truncated", "NaN", "text"],
)
def test_non_json_is_refused(raw: bytes | str) -> None:
    with pytest.raises(ContractError, match="invalid JSON") as caught:
        decode(raw)
    assert caught.value.paths == ("",)
    assert caught.value.message_type is None


@pytest.mark.parametrize("raw", [b"[]", b'"ha.event.v1"', b"null"])
def test_json_that_is_not_an_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ContractError, match="expected a JSON object"):
        decode(raw)


@pytest.mark.parametrize("raw", [b"{}", b'{"type": 1}'])
def test_missing_or_non_string_type_is_refused(raw: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        decode(raw)
    assert caught.value.paths == ("type",)


def test_contract_error_is_a_value_error_not_a_pydantic_error() -> None:
    with pytest.raises(ValueError, match=r"data\.entity_id") as caught:
        decode(_message("ha.state_changed.v1", _drop_entity_id))
    assert type(caught.value) is ContractError
