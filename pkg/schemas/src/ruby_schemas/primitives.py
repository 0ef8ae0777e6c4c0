"""Field types shared by the contracts: constrained strings, UTC datetimes, JSON values, bytes."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

# No lookarounds, so the same pattern works in pydantic's Rust engine, in Python and in JSON Schema.
SLUG_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*$"
"""A Home Assistant domain or service name: lower-case words joined by single underscores."""

ENTITY_ID_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*\.[a-z0-9]+(?:_[a-z0-9]+)*$"
"""Home Assistant's `domain.object_id` rule: no leading, trailing or doubled underscore."""

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]+$"
"""Safe as one NATS subject token: no dot, space, `*` or `>`."""

TYPE_PATTERN = r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*\.v[1-9][0-9]*$"
"""A message type: dotted lower-case name ending in a version, such as `ha.state_changed.v1`."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime: TypeAlias = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; a naive datetime is refused."""

NonEmptyStr: TypeAlias = Annotated[str, Field(min_length=1)]
"""A string with at least one character."""

Slug: TypeAlias = Annotated[str, Field(pattern=SLUG_PATTERN)]
"""A Home Assistant domain or service name (also a valid subject token)."""

EntityId: TypeAlias = Annotated[str, Field(pattern=ENTITY_ID_PATTERN)]
"""A Home Assistant entity id, `domain.object_id`."""

Identifier: TypeAlias = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
"""An identifier that can be used as one NATS subject token."""

JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object with arbitrary JSON values (never `Any`)."""


def _bytes_from_wire(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error) as exc:
            raise ValueError("expected standard base64 text") from exc
    raise ValueError("expected bytes or base64 text")


def _bytes_to_wire(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


RawBytes: TypeAlias = Annotated[
    bytes,
    PlainValidator(_bytes_from_wire),
    PlainSerializer(_bytes_to_wire, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Opaque bytes kept byte-exact: `bytes` in Python, standard base64 text in JSON."""
