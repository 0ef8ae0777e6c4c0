"""The one mapping from message type to payload class, and decoding at the edge.

Every message type on the wire is registered here, in one visible list. During a migration
both versions of a message (`foo.v1` and `foo.v2`) stay registered, so `decode` accepts both
and consumers match on the payload class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

import pydantic_core
from pydantic import ValidationError

from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.base import Payload
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, envelope_class
from ruby_schemas.errors import ContractError, FieldError
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import EventFiredV1, StateChangedV1
from ruby_schemas.primitives import TYPE_PATTERN
from ruby_schemas.rules import (
    RuleEventV1,
    RuleFailedV1,
    RuleFiredV1,
    RuleLoadedV1,
    RuleRejectedV1,
    RuleUnloadedV1,
)

P = TypeVar("P", bound=Payload)

_TYPE_GUESS = re.compile(rb'"type"\s*:\s*"([^"\\]+)"')


def _guess_type(raw: bytes | bytearray | str) -> str | None:
    """The first `"type": "..."` in the raw text: usually the envelope's own."""
    found = _TYPE_GUESS.search(raw.encode() if isinstance(raw, str) else raw)
    return found.group(1).decode("ascii", "replace") if found else None


class Registry(Mapping[str, type[Payload]]):
    """A read-mostly mapping `type` string → payload class; iterates in sorted type order.

    Register every class before sharing the registry between threads; lookups and `decode` are
    then safe to call concurrently.
    """

    def __init__(self, payload_classes: Iterable[type[Payload]] = ()) -> None:
        self._classes: dict[str, type[Payload]] = {}
        for payload_class in payload_classes:
            self.register(payload_class)

    def register(self, payload_class: type[P]) -> type[P]:
        """Add `payload_class` under its `TYPE` and return it (usable as a class decorator).

        Raises `ValueError` if `TYPE` is missing or not a versioned type string, or if another
        class already holds that type.
        """
        message_type = getattr(payload_class, "TYPE", None)
        if not isinstance(message_type, str) or not re.fullmatch(TYPE_PATTERN, message_type):
            raise ValueError(f"{payload_class.__name__}.TYPE must match {TYPE_PATTERN}")
        existing = self._classes.get(message_type)
        if existing is not None and existing is not payload_class:
            raise ValueError(f"{message_type} is already registered to {existing.__name__}")
        self._classes[message_type] = payload_class
        return payload_class

    def __getitem__(self, message_type: str) -> type[Payload]:
        return self._classes[message_type]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def decode(self, raw: bytes | bytearray | str) -> Envelope[Payload]:
        """Parse and validate one message; the only way raw bytes become a contract.

        Reads `type`, picks its payload class and validates the whole envelope strictly (no
        type coercion, no unknown fields). Raises `ContractError` for invalid JSON, a missing or
        unknown `type`, or any validation failure; its message names each offending field path,
        such as `data.entity_id`.

        Fast path: the type is guessed from the raw text and the message parsed once. A wrong
        guess cannot pass (the envelope requires `type` to equal its payload's `TYPE`); any
        failure takes the full path below, which produces the error.
        """
        guess = _guess_type(raw)
        if guess is not None and (guessed := self._classes.get(guess)) is not None:
            try:
                return envelope_class(guessed).model_validate_json(raw, strict=True)
            except ValidationError:
                pass  # report it properly below
        try:
            document = pydantic_core.from_json(raw, allow_inf_nan=False)
        except ValueError as exc:
            raise ContractError(None, [FieldError("", f"invalid JSON: {exc}")]) from exc
        if not isinstance(document, dict):
            raise ContractError(None, [FieldError("", "expected a JSON object")])
        message_type = document.get("type")
        if not isinstance(message_type, str):
            raise ContractError(None, [FieldError("type", "missing, or not a string")])
        payload_class = self._classes.get(message_type)
        if payload_class is None:
            raise ContractError(
                message_type, [FieldError("type", f"unknown message type {message_type!r}")]
            )
        try:
            return envelope_class(payload_class).model_validate_json(raw, strict=True)
        except ValidationError as exc:
            errors = [
                FieldError(_dotted(error["loc"]), error["msg"])
                for error in exc.errors(include_url=False)
            ]
            raise ContractError(message_type, errors) from exc


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


REGISTRY = Registry(
    [
        StateChangedV1,
        EventFiredV1,
        CallServiceV1,
        CommandOutcomeV1,
        AuditRecordV1,
        DeadLetterV1,
        RuleLoadedV1,
        RuleRejectedV1,
        RuleFiredV1,
        RuleFailedV1,
        RuleUnloadedV1,
        RuleEventV1,
        HaEventTypesV1,
    ]
)
"""Every message type Ruby Core sends or accepts."""


def decode(raw: bytes | bytearray | str) -> Envelope[Payload]:
    """Decode one message with `REGISTRY`; see `Registry.decode`."""
    return REGISTRY.decode(raw)


def encode(envelope: Envelope[Payload]) -> bytes:
    """Return the envelope as compact UTF-8 JSON, the form `decode` reads back to an equal one."""
    return envelope.model_dump_json().encode("utf-8")
