"""A malformed message raises ContractError naming the offending field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from ruby_schemas import CallServiceV1, ContractError, DeadLetterV1, decode, encode
from ruby_schemas.examples import example_envelope, examples
from ruby_schemas.primitives import sendable_headers

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
    [b"\xff\xfe\x00garbage", b"", b"{", "not json", b'{"type": "\\ud800"}', b"[" * 300],
    ids=["non-utf8 bytes", "empty", "truncated", "text", "escaped lone surrogate", "too deep"],
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


# --- what cannot be sent safely (issue 12) -----------------------------------------------------

ID_BREAKERS = {
    "CR LF": "a\r\nNats-Expected-Stream: x",
    "NUL": "a\x00b",
    "TAB": "a\tb",
    "DEL": "a\x7fb",
    "C1 NEL": "a\x85b",
    "space": "a b",
    "trailing newline": "ab\n",
    "no-break space": "a\xa0b",
    "line separator": "a\u2028b",
    "right-to-left override": "a\u202eb",
    "zero-width space": "a\u200bb",
    "byte order mark": "\ufeffab",
}


@pytest.mark.parametrize("field", ["id", "correlation_id", "causation_id"])
@pytest.mark.parametrize("value", ID_BREAKERS.values(), ids=ID_BREAKERS.keys())
def test_an_envelope_id_that_is_not_printable_is_refused(field: str, value: str) -> None:
    raw = _message("ha.state_changed.v1", lambda d: d.update({field: value}))
    with pytest.raises(ContractError) as caught:
        decode(raw)
    assert caught.value.paths == (field,)
    bad = next(i for i, char in enumerate(value) if char not in "ab")
    assert f"formatting character (U+{ord(value[bad]):04X} at character {bad})" in str(caught.value)
    assert value not in str(caught.value)  # the hostile value itself is never repeated


@pytest.mark.parametrize(
    ("message_type", "change", "path"),
    [
        ("ha.call_service.v1", lambda d: d["data"].update(command_id="c\r\n1"), "data.command_id"),
        ("cmd.outcome.v1", lambda d: d["data"].update(command_id="c 1"), "data.command_id"),
        ("ha.event.v1", lambda d: d["data"].update(context_id="x\x00"), "data.context_id"),
        ("audit.record.v1", lambda d: d["data"].update(record_id="r\n"), "data.record_id"),
        (
            "rule.fired.v1",
            lambda d: d["data"].update(command_ids=["ok", "bad\r"]),
            "data.command_ids[1]",
        ),
        ("ha.state_changed.v1", lambda d: d.update(id="x" * 513), "id"),
        ("ha.call_service.v1", lambda d: d["data"].update(command_id="x" * 257), "data.command_id"),
    ],
    ids=[
        "command id",
        "outcome command id",
        "context id",
        "record id",
        "listed id",
        "long",
        "long",
    ],
)
def test_ids_that_end_up_in_headers_are_refused(
    message_type: str, change: Callable[[Document], None], path: str
) -> None:
    with pytest.raises(ContractError) as caught:
        decode(_message(message_type, change))
    assert caught.value.paths == (path,)


def test_the_longest_ids_are_accepted() -> None:
    def longest(doc: Document) -> None:
        doc.update(id="é" * 512, correlation_id="x" * 512)
        doc["data"]["command_id"] = "ü" * 256

    envelope = decode(_message("ha.call_service.v1", longest))
    assert len(envelope.id) == 512
    assert decode(encode(envelope)) == envelope


@pytest.mark.parametrize(
    ("headers", "path", "why"),
    [
        ({"X-Origin": "a\r\nInjected: yes"}, "data.headers.X-Origin", "control character (U+000D"),
        ({"X-Origin": "a\x00"}, "data.headers.X-Origin", "control character (U+0000"),
        ({"X-Origin": "a\tb"}, "data.headers.X-Origin", "control character (U+0009"),
        ({"X-Origin": "a\x9bb"}, "data.headers.X-Origin", "control character (U+009B"),
        ({"Bad Name": "v"}, "data.headers['Bad Name'][key]", "RFC 7230 token (U+0020"),
        ({"X\r\nY": "v"}, "data.headers['X\\r\\nY'][key]", "RFC 7230 token (U+000D"),
        ({"": "v"}, "data.headers[''][key]", "RFC 7230 token"),
    ],
    ids=["CR LF in value", "NUL in value", "TAB in value", "C1 in value", "space in name",
         "CR LF in name", "empty name"],
)  # fmt: skip
def test_dead_letter_headers_that_could_not_be_sent_again_are_refused(
    headers: dict[str, str], path: str, why: str
) -> None:
    raw = _message("dlq.dead_letter.v1", lambda d: d["data"].update(headers=headers))
    with pytest.raises(ContractError) as caught:
        decode(raw)
    assert caught.value.paths == (path,)
    assert why in str(caught.value)
    assert not {"\r", "\n"} & set(str(caught.value))


def test_headers_that_can_be_sent_are_kept_and_the_others_left_out() -> None:
    headers = {
        "Nats-Msg-Id": "abc",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "X-Note": "spaces and ünïcode are fine",
        "X-Empty": "",
        "X-Evil": "a\r\nInjected: yes",
        "X-Tab": "a\tb",
        "Bad Name": "v",
    }
    kept = sendable_headers(headers)
    assert set(kept) == {"Nats-Msg-Id", "traceparent", "X-Note", "X-Empty"}
    raw = _message("dlq.dead_letter.v1", lambda d: d["data"].update(headers=kept))
    letter = decode(raw).data
    assert isinstance(letter, DeadLetterV1)
    assert letter.headers == kept


@pytest.mark.parametrize(
    ("time", "path"),
    [
        ("9999-12-31T23:59:59-23:59", "time"),  # past year 9999 once in UTC
        ("0001-01-01T00:00:00+00:01", "time"),  # before year 1 once in UTC
        ("0000-01-01T00:00:00Z", "time"),
        ("2024-06-30T23:59:60Z", "time"),
    ],
    ids=["after 9999 in UTC", "before year 1 in UTC", "year 0", "leap second"],
)
def test_a_date_out_of_range_is_refused_naming_the_field(time: str, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode(_message("rule.loaded.v1", lambda d: d.update(time=time)))
    assert caught.value.paths == (path,)


def test_a_nested_date_out_of_range_is_refused_naming_the_field() -> None:
    def overflow(doc: Document) -> None:
        doc["data"]["deadline"] = "9999-12-31T23:59:59.999999-00:01"

    with pytest.raises(ContractError, match="out of range once converted to UTC") as caught:
        decode(_message("ha.call_service.v1", overflow))
    assert caught.value.paths == ("data.deadline",)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"])
@pytest.mark.parametrize(
    ("message_type", "where", "path"),
    [
        ("ha.call_service.v1", lambda d, n: d["data"]["data"].update(x=n), "data.data.x"),
        (
            "ha.state_changed.v1",
            lambda d, n: d["data"]["new_state"]["attributes"].update(xy=[1, {"k": n}]),
            "data.new_state.attributes.xy[1].k",
        ),
        ("audit.record.v1", lambda d, n: d["data"].update(details={"a b": n}), "data.details['a b']"),  # noqa: E501 - one case per line reads best
        ("ha.event.v1", lambda d, n: d["data"]["data"].update(args=[n]), "data.data.args[0]"),
    ],
    ids=["service data", "nested attribute", "odd key", "event data"],
)  # fmt: skip
def test_non_finite_numbers_are_refused_wherever_they_are(
    number: str, message_type: str, where: Callable[[Document, object], None], path: str
) -> None:
    marker = 12345.678
    raw = _message(message_type, lambda d: where(d, marker))
    raw = raw.replace(b"12345.678", number.encode())
    with pytest.raises(ContractError, match="NaN and ±Infinity are not JSON numbers") as caught:
        decode(raw)
    assert caught.value.paths == (path,)


def test_non_finite_numbers_are_refused_when_building_a_message_too() -> None:
    payload = examples()["ha.call_service.v1"]
    for number in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            CallServiceV1.model_validate({**payload.model_dump(), "data": {"x": [number]}})


def test_text_with_a_lone_surrogate_is_refused_naming_the_field() -> None:
    document = json.loads(encode(example_envelope("ha.state_changed.v1")))
    document["data"]["new_state"]["attributes"]["friendly_name"] = "Kitchen \ud800"
    raw = json.dumps(document, ensure_ascii=False)
    with pytest.raises(ContractError, match="a lone surrogate") as caught:
        decode(raw)
    assert caught.value.paths == ("data.new_state.attributes.friendly_name",)
    with pytest.raises(ContractError, match="a lone surrogate") as caught:
        decode('{"type": "\udfff"}')
    assert caught.value.paths == ("type",)
    with pytest.raises(ContractError, match="a lone surrogate") as caught:
        decode('{"\udfff": ')  # not even JSON: the whole message is named
    assert caught.value.paths == ("",)


def test_a_hostile_unknown_type_is_named_escaped_and_cut() -> None:
    hostile = "x\r\nInjected: yes" + "y" * 500
    with pytest.raises(ContractError) as caught:
        decode(json.dumps({"type": hostile}))
    assert caught.value.paths == ("type",)
    assert caught.value.message_type is None
    text = str(caught.value)
    assert not {"\r", "\n"} & set(text)
    assert len(text) < 120
