"""The one mapping from message type to payload class, and decoding at the edge.

Every message type on the wire is registered here, in one visible list. During a migration
both versions of a message (`foo.v1` and `foo.v2`) stay registered, so `decode` accepts both
and consumers match on the payload class.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import pydantic_core
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.audit_api import (
    AuditApiErrorV1,
    AuditChainV1,
    AuditQueryV1,
    AuditRecordsV1,
    AuditVerifiedV1,
    AuditVerifyV1,
    AuditWhyV1,
)
from ruby_schemas.base import Payload
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1, FireEventV1
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, envelope_class
from ruby_schemas.errors import ContractError, FieldError, dotted, shown
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import EventFiredV1, HaLifecycleV1, StateChangedV1
from ruby_schemas.primitives import (
    HEADER_NAME_CHAR,
    HEADER_NAME_PATTERN,
    HEADER_VALUE_CHAR,
    HEADER_VALUE_PATTERN,
    ID_CHAR,
    ID_PATTERN,
    TYPE_PATTERN,
)
from ruby_schemas.rules import (
    RuleEventV1,
    RuleFailedV1,
    RuleFiredV1,
    RuleLoadedV1,
    RuleRejectedV1,
    RuleUnloadedV1,
)
from ruby_schemas.webhooks import WebhookCalledV1

P = TypeVar("P", bound=Payload)

_TYPE_GUESS = re.compile(rb'"type"\s*:\s*"([^"\\]+)"')


_SURROGATE = re.compile(r"[\ud800-\udfff]")
# pattern -> (what it means, in words; the pattern of one character it allows)
_SAFE_TEXT = {
    ID_PATTERN: (
        "an id must be printable: no control character, whitespace or invisible formatting "
        "character",
        re.compile(ID_CHAR),
    ),
    HEADER_NAME_PATTERN: ("a header name must be an RFC 7230 token", re.compile(HEADER_NAME_CHAR)),
    HEADER_VALUE_PATTERN: (
        "a header value must not hold a control character",
        re.compile(HEADER_VALUE_CHAR),
    ),
}


def _guess_type(raw: bytes | bytearray) -> str | None:
    """The first `"type": "..."` in the raw text: usually the envelope's own."""
    found = _TYPE_GUESS.search(raw)
    return found.group(1).decode("ascii", "replace") if found else None


def _utf8(raw: bytes | bytearray | str) -> bytes | bytearray:
    """`raw` as UTF-8 bytes; text with a lone surrogate (not text at all) is refused."""
    if not isinstance(raw, str):
        return raw
    try:
        return raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"U+{ord(raw[exc.start]):04X} at character {exc.start}"
        raise ContractError(
            None, [FieldError(_surrogate_path(raw), f"a lone surrogate ({where}) is not text")]
        ) from None


def _surrogate_path(raw: str) -> str:
    """The path of a key or string holding a lone surrogate, or `""` if none is found."""
    with contextlib.suppress(ValueError, RecursionError):
        stack: list[tuple[tuple[int | str, ...], Any]] = [((), json.loads(raw))]
        while stack:
            loc, item = stack.pop()
            if isinstance(item, str) and _SURROGATE.search(item):
                return dotted(loc)
            if isinstance(item, dict):
                for key, value in item.items():
                    if _SURROGATE.search(key):
                        return dotted((*loc, key))
                    stack.append(((*loc, key), value))
            elif isinstance(item, list):
                stack.extend(((*loc, index), value) for index, value in enumerate(item))
    return ""


def _field_error(error: ErrorDetails) -> FieldError:
    """One pydantic error as a `FieldError`, worded for an operator; never echoes the value."""
    loc, message = error["loc"], error["msg"]
    ctx = error.get("ctx") or {}
    if error["type"] == "finite_number":
        loc, message = (*loc, *ctx["loc"]), "NaN and \u00b1Infinity are not JSON numbers"
    elif error["type"] == "union_tag_invalid":  # pydantic's message quotes the tag given
        message = f"{ctx.get('discriminator', 'the tag')} is none of {ctx.get('expected_tags')}"
    elif error["type"] == "string_pattern_mismatch" and ctx.get("pattern") in _SAFE_TEXT:
        message, allowed = _SAFE_TEXT[ctx["pattern"]]
        value = error["input"]
        if isinstance(value, str):
            bad = next((i for i, char in enumerate(value) if not allowed.fullmatch(char)), None)
            if bad is not None:
                message += f" (U+{ord(value[bad]):04X} at character {bad})"
    return FieldError(dotted(loc), message)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every error of ``exc`` as a `FieldError` worded for an operator; never echoes a value."""
    return [_field_error(error) for error in exc.errors(include_url=False)]


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
        type coercion, no unknown fields). Raises `ContractError`, and nothing else, for
        anything it refuses: invalid JSON or UTF-8 (text with a lone surrogate included),
        nesting deeper than the parser's limit, a number too large to parse, a missing or
        unknown `type`, or any validation failure (NaN or ±Infinity anywhere, a date out of
        range, a control character in an id or header); its message names each offending
        field path, such as `data.entity_id`, and never repeats the offending value (an unknown
        type is quoted, escaped and cut). Whatever it accepts, `encode` writes back to bytes
        that decode to an equal envelope.

        Fast path: the type is guessed from the raw text and the message parsed once. A wrong
        guess cannot pass (the envelope requires `type` to equal its payload's `TYPE`); any
        failure takes the full path below, which produces the error.
        """
        raw = _utf8(raw)
        guess = _guess_type(raw)
        if guess is not None and (guessed := self._classes.get(guess)) is not None:
            try:
                return envelope_class(guessed).model_validate_json(raw, strict=True)
            except ValidationError:
                pass  # report it properly below
        try:
            # NaN and Infinity parse here (as in the fast path), so that validation refuses
            # them naming the field that holds them.
            document = pydantic_core.from_json(raw, allow_inf_nan=True)
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
                None, [FieldError("type", f"unknown message type {shown(message_type)}")]
            )
        try:
            return envelope_class(payload_class).model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise ContractError(message_type, field_errors(exc)) from exc


REGISTRY = Registry(
    [
        StateChangedV1,
        EventFiredV1,
        CallServiceV1,
        FireEventV1,
        CommandOutcomeV1,
        HaLifecycleV1,
        AuditRecordV1,
        DeadLetterV1,
        RuleLoadedV1,
        RuleRejectedV1,
        RuleFiredV1,
        RuleFailedV1,
        RuleUnloadedV1,
        RuleEventV1,
        HaEventTypesV1,
        WebhookCalledV1,
        AuditQueryV1,
        AuditRecordsV1,
        AuditWhyV1,
        AuditChainV1,
        AuditVerifyV1,
        AuditVerifiedV1,
        AuditApiErrorV1,
    ]
)
"""Every message type Ruby Core sends or accepts."""


def decode(raw: bytes | bytearray | str) -> Envelope[Payload]:
    """Decode one message with `REGISTRY`; see `Registry.decode`."""
    return REGISTRY.decode(raw)


def encode(envelope: Envelope[Payload]) -> bytes:
    """Return the envelope as compact UTF-8 JSON, the form `decode` reads back to an equal one."""
    return envelope.model_dump_json().encode("utf-8")
