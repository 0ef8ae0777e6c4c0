"""One registry maps types to payload classes and can hold several versions of one message."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ruby_schemas import (
    REGISTRY,
    ContractError,
    HaEventTypesV1,
    Payload,
    Registry,
    decode,
    encode,
    make_envelope,
)
from ruby_schemas.export import expected_files
from ruby_schemas.primitives import NonEmptyStr


class GreetingV1(Payload):
    """A test message, first version."""

    TYPE: ClassVar[str] = "test.greeting.v1"
    name: NonEmptyStr


class GreetingV2(Payload):
    """The same message after an incompatible change: `name` split in two."""

    TYPE: ClassVar[str] = "test.greeting.v2"
    given_name: NonEmptyStr
    family_name: NonEmptyStr


def test_both_versions_of_a_message_decode_during_a_migration() -> None:
    registry = Registry([GreetingV1, GreetingV2])
    old = make_envelope(GreetingV1(name="Ada Lovelace"), source="ruby/test")
    new = make_envelope(GreetingV2(given_name="Ada", family_name="Lovelace"), source="ruby/test")

    assert registry.decode(encode(old)) == old
    assert registry.decode(encode(new)) == new
    assert isinstance(registry.decode(encode(old)).data, GreetingV1)
    assert isinstance(registry.decode(encode(new)).data, GreetingV2)
    assert list(registry) == ["test.greeting.v1", "test.greeting.v2"]
    assert set(expected_files(registry)) == {"test.greeting.v1.json", "test.greeting.v2.json"}


def test_a_version_dropped_from_the_registry_is_refused() -> None:
    registry = Registry([GreetingV2])
    old = make_envelope(GreetingV1(name="Ada"), source="ruby/test")
    with pytest.raises(ContractError, match=r"unknown message type 'test\.greeting\.v1'"):
        registry.decode(encode(old))


def test_a_type_is_registered_once() -> None:
    class Impostor(Payload):
        TYPE: ClassVar[str] = "test.greeting.v1"

    registry = Registry([GreetingV1])
    registry.register(GreetingV1)  # the same class again is harmless
    with pytest.raises(ValueError, match="already registered to GreetingV1"):
        registry.register(Impostor)


@pytest.mark.parametrize("bad_type", ["test.greeting", "Test.Greeting.v1", "test.greeting.v0"])
def test_type_must_carry_a_version(bad_type: str) -> None:
    unversioned = type("Unversioned", (Payload,), {"TYPE": bad_type, "__annotations__": {}})
    with pytest.raises(ValueError, match="TYPE must match"):
        Registry().register(unversioned)


def test_the_registry_holds_every_released_contract() -> None:
    assert list(REGISTRY) == [
        "api.webhook.v1",
        "audit.api_error.v1",
        "audit.chain.v1",
        "audit.query.v1",
        "audit.record.v1",
        "audit.records.v1",
        "audit.verified.v1",
        "audit.verify.v1",
        "audit.why.v1",
        "cmd.outcome.v1",
        "dlq.dead_letter.v1",
        "engine.ha_event_types.v1",
        "ha.call_service.v1",
        "ha.event.v1",
        "ha.fire_event.v1",
        "ha.lifecycle.v1",
        "ha.state_changed.v1",
        "rule.event.v1",
        "rule.failed.v1",
        "rule.fired.v1",
        "rule.loaded.v1",
        "rule.rejected.v1",
        "rule.unloaded.v1",
    ]
    for message_type, payload_class in REGISTRY.items():
        assert message_type == payload_class.TYPE


def test_the_wanted_event_types_are_kept_sorted_once_and_strict() -> None:
    wanted = HaEventTypesV1(event_types=("zha_event", "deconz_event", "zha_event"))
    assert wanted.event_types == ("deconz_event", "zha_event")
    decoded = decode(encode(make_envelope(wanted, source="ruby/engine")))
    assert decoded.data == wanted
    with pytest.raises(ContractError, match=r"data\.event_types\[0\]"):
        decode(
            encode(make_envelope(wanted, source="ruby/engine")).replace(b'"deconz_event"', b'""')
        )
    with pytest.raises(ContractError, match=r"data\.extra"):
        decode(
            encode(make_envelope(wanted, source="ruby/engine")).replace(
                b'"event_types"', b'"extra":1,"event_types"'
            )
        )
