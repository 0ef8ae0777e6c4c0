"""Fuzz: whatever bytes or text arrive, `decode` either returns an envelope that round-trips or
raises `ContractError`; nothing else (issue 12).

Any other exception would make a consumer retry a poison message instead of dead-lettering it at
once; a value accepted but re-encoded differently (NaN as `null`) would change on its way
through. The inputs: random bytes and text (lone surrogates included); and valid envelopes of
every registered type (the examples, and envelopes generated from the models), mutated as JSON
(a string or number replaced by a hostile one, any value by anything hostile, a key deleted,
renamed or added) and then as bytes (truncated, a byte flipped, inserted or deleted). The
hostile values: control characters, invisible formatting characters, lone surrogates, huge and
non-finite numbers, out-of-range dates, deep nesting, empty and very long strings.

3,700 examples in all (2,000 mutated examples, 100 mutated generated envelopes, 1,000 byte
strings, 600 texts) take about fifteen seconds on a busy 2-core machine, most of it Hypothesis's
own work; `--hypothesis-show-statistics` shows how many were accepted and how many refused, and
the last test shows that, for every type, both happen.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, find, given, settings
from hypothesis import strategies as st

from ruby_schemas import REGISTRY, ContractError, DeadLetterV1, decode, encode
from ruby_schemas.examples import example_envelope
from ruby_schemas.primitives import sendable_headers
from ruby_schemas.testing import any_envelope

Document = Any  # a parsed JSON document: what a mutation works on
Path = tuple[int | str, ...]

BASES: list[Document] = [json.loads(encode(example_envelope(t))) for t in REGISTRY]
HOSTILE_TEXT = [
    "",
    "a\r\nNats-Expected-Stream: EVIL",
    "\x00",
    "\t",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\x9b",
    " ",
    "\u00a0",
    "\u2028",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\ud800",
    "x\udfffy",
    "x" * 600,
    "é" * 257,
]
HOSTILE_NUMBERS: list[object] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    -0.0,
    5e-324,
    2**63,
    -(2**64),
    10**400,
    0,
    -1,
]
HOSTILE_DATES = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+00:01",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-06-30T23:59:60Z",
    "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00",
    "1714588200",
    "9999-12-31T23:59:59.999999999Z",
]
HOSTILE_SHAPES: list[object] = [None, True, [], {}, [[[[[[[[]]]]]]]], {"a": {"b": {"c": {}}}}]
DEEP = "[" * 250 + "]" * 250


def paths(document: Document, here: Path = ()) -> list[Path]:
    """Every place in `document` that holds a value, the document itself first."""
    found = [here]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*here, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*here, index))
    return found


def at(document: Document, path: Path) -> Document:
    for part in path:
        document = document[part]
    return document


_TEXT = st.sampled_from(HOSTILE_TEXT)
_AROUND = st.sampled_from(["", "ok", "é", "日本", "\U0001f600"])
HOSTILE_STRINGS = st.one_of(_TEXT, st.tuples(_AROUND, _TEXT, _AROUND).map("".join))
HOSTILE_NUMBER = st.sampled_from(HOSTILE_NUMBERS)
HOSTILE_VALUES = st.one_of(
    HOSTILE_STRINGS,
    HOSTILE_NUMBER,
    st.sampled_from(HOSTILE_DATES),
    st.sampled_from(HOSTILE_SHAPES).map(copy.deepcopy),  # mutated later: never shared
    st.sampled_from(list(REGISTRY)),  # another type's name, where a type may be guessed
)
HOSTILE_KEYS = st.one_of(_TEXT, st.just("type"), st.text(max_size=8))
MUTATIONS = st.sampled_from(["alike", "alike", "replace", "delete", "rename", "add"])
BYTE_EDITS = st.sampled_from(["truncate", "flip", "insert", "delete"])
INSERTED = st.sampled_from([b"\x00", b"\r\n", b"\xff", b'"', b"\\", b"9"])


@st.composite
def mutated(draw: st.DrawFn, bases: st.SearchStrategy[Document]) -> bytes | str:
    """One of `bases`, mutated as JSON and then as bytes (or left as text)."""
    document = json.loads(json.dumps(draw(bases)))
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        places = paths(document)
        path = places[draw(st.integers(0, len(places) - 1))]
        parent, last = (at(document, path[:-1]), path[-1]) if path else (None, None)
        kind = draw(MUTATIONS)
        if parent is None:
            document = draw(HOSTILE_VALUES)
        elif kind == "alike":  # a string by a hostile string, a number by a hostile number
            old = parent[last]
            alike = HOSTILE_STRINGS if isinstance(old, str) else HOSTILE_NUMBER
            parent[last] = draw(alike if isinstance(old, (str, int, float)) else HOSTILE_VALUES)
        elif kind == "replace":
            parent[last] = draw(HOSTILE_VALUES)
        elif kind == "delete":
            del parent[last]
        elif isinstance(parent, dict) and isinstance(last, str):
            new_key = draw(HOSTILE_KEYS)
            value = parent.pop(last) if kind == "rename" else draw(HOSTILE_VALUES)
            parent[new_key] = value
        else:
            parent.insert(last, draw(HOSTILE_VALUES))
        if not isinstance(document, (dict, list)):
            break
    text = json.dumps(document, ensure_ascii=draw(st.booleans()), allow_nan=True)
    if draw(st.integers(0, 7)) == 0:
        text = text.replace("[]", DEEP, 1)
    if draw(st.booleans()):
        return text  # as text: a lone surrogate stays one
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        where = draw(st.integers(0, len(raw)))
        edit = draw(BYTE_EDITS)
        if edit == "truncate":
            del raw[where:]
        elif edit == "flip" and where < len(raw):
            raw[where] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            raw[where:where] = draw(INSERTED)
        elif where < len(raw):
            del raw[where]
    return bytes(raw)


def _strict_json(name: str) -> None:
    raise AssertionError(f"encode wrote {name}, which is not JSON")


def check_refusal(error: ContractError) -> None:
    """A refusal names at least one problem, on one line that no hostile key can break."""
    assert error.errors
    assert not {"\r", "\n", "\x00", "\x1b"} & set(str(error)), str(error).encode()


def check(raw: bytes | str) -> bool:
    """The property: `ContractError`, or an envelope that round-trips as strict JSON.

    Returns whether `raw` was accepted."""
    try:
        envelope = decode(raw)
    except ContractError as exc:
        check_refusal(exc)
        return False
    encoded = encode(envelope)
    json.loads(encoded, parse_constant=_strict_json)
    again = decode(encoded)
    assert again == envelope
    assert encode(again) == encoded
    if isinstance(envelope.data, DeadLetterV1):
        assert sendable_headers(envelope.data.headers) == envelope.data.headers
    return True


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


@fuzz(2000)
@given(mutated(st.sampled_from(BASES)))
def test_mutated_examples_decode_and_round_trip_or_raise_contract_error(raw: bytes | str) -> None:
    event("accepted" if check(raw) else "refused")


@fuzz(100)
@given(mutated(any_envelope().map(lambda envelope: json.loads(encode(envelope)))))
def test_mutated_generated_envelopes_round_trip_or_raise_contract_error(raw: bytes | str) -> None:
    """Envelopes generated from the models: every optional field set, odd but valid values."""
    event("accepted" if check(raw) else "refused")


@fuzz(1000)
@given(st.binary(max_size=400))
def test_random_bytes_raise_contract_error_or_round_trip(raw: bytes) -> None:
    event("accepted" if check(raw) else "refused")


@fuzz(600)
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(), st.sampled_from(['"', "{", "}", "[", "]", ":", ",", "\ud800"])
        ),
        max_size=200,
    )
)
def test_random_text_raises_contract_error_or_round_trips(raw: str) -> None:
    event("accepted" if check(raw) else "refused")


def test_every_registered_type_is_a_base() -> None:
    assert {document["type"] for document in BASES} == set(REGISTRY)
    for document in BASES:
        assert check(json.dumps(document))  # the unmutated bases are accepted
        assert decode(json.dumps(document)).type == document["type"]


def accepted(raw: bytes | str) -> bool:
    try:
        decode(raw)
    except ContractError:
        return False
    return True


@pytest.mark.parametrize("message_type", list(REGISTRY))
def test_the_mutations_reach_both_outcomes_for_every_type(message_type: str) -> None:
    """Not vacuous: some hostile mutations of each type are refused, others accepted."""
    original = example_envelope(message_type)
    bases = mutated(st.just(json.loads(encode(original))))
    quick = settings(max_examples=2000, database=None, deadline=None)
    refused = find(bases, lambda raw: not accepted(raw), settings=quick)
    assert not accepted(refused)
    changed = find(bases, lambda raw: accepted(raw) and decode(raw) != original, settings=quick)
    assert check(changed)


@pytest.mark.parametrize("tag", HOSTILE_TEXT)
def test_a_wrong_union_tag_is_named_never_echoed(tag: str) -> None:
    """The fuzzer's find (2026-12-04): pydantic quotes a discriminator's value in its message."""
    raw = json.loads(encode(example_envelope("audit.chain.v1")))
    raw["data"]["chain"][0]["link"] = tag
    with pytest.raises(ContractError) as caught:
        decode(json.dumps(raw))
    check_refusal(caught.value)
    assert "EVIL" not in str(caught.value)
    assert "link" in str(caught.value) or "invalid JSON" in str(caught.value)  # a surrogate
