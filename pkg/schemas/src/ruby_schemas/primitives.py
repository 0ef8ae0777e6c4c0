"""Field types shared by the contracts: constrained strings, UTC datetimes, JSON values, bytes."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ruby_schemas.errors import dotted

_J = TypeVar("_J", bound=JsonValue)

# No lookarounds, so the same pattern works in pydantic's Rust engine, in Python and in JSON Schema.
SLUG_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*$"
"""A Home Assistant domain or service name: lower-case words joined by single underscores."""

ENTITY_ID_PATTERN = r"^[a-z0-9]+(?:_[a-z0-9]+)*\.[a-z0-9]+(?:_[a-z0-9]+)*$"
"""Home Assistant's `domain.object_id` rule: no leading, trailing or doubled underscore."""

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]+$"
"""Safe as one NATS subject token: no dot, space, `*` or `>`."""

TYPE_PATTERN = r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*\.v[1-9][0-9]*$"
"""A message type: dotted lower-case name ending in a version, such as `ha.state_changed.v1`."""

ID_CHAR = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
"""One character of an id: anything but a control character (C0, DEL, C1), whitespace (ASCII or
Unicode) or an invisible formatting character (zero-width, bidirectional controls, byte order
mark). What is left is printable text, non-ASCII letters included."""

ID_PATTERN = f"^{ID_CHAR}+$"
"""An id: one or more `ID_CHAR`s."""

ID_MAX_LENGTH = 256
"""The longest `Id`; Home Assistant's context ids have at most 36 characters, the engine's
command ids 36."""

MESSAGE_ID_MAX_LENGTH = 512
"""The longest `MessageId`: room for a prefix and an `Id`, or an entity id and a timestamp."""

HEADER_NAME_CHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
"""One character of a NATS header name: an RFC 7230 token character."""

HEADER_NAME_PATTERN = f"^{HEADER_NAME_CHAR}+$"
"""A NATS header name: an RFC 7230 token, the only names nats-py sends (it raises on others)."""

HEADER_VALUE_CHAR = r"[^\x00-\x1f\x7f-\x9f]"
"""One character of a NATS header value: anything but a control character (C0 including TAB,
CR, LF and NUL, DEL, C1), so a value can never end its header line or inject one."""

HEADER_VALUE_PATTERN = f"^{HEADER_VALUE_CHAR}*$"
"""A NATS header value: any number of `HEADER_VALUE_CHAR`s."""

_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
_HEADER_VALUE = re.compile(HEADER_VALUE_PATTERN)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from None


UtcDatetime: TypeAlias = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; a naive datetime, or one whose UTC instant
falls outside years 1 to 9999, is refused."""

NonEmptyStr: TypeAlias = Annotated[str, Field(min_length=1)]
"""A string with at least one character."""

Slug: TypeAlias = Annotated[str, Field(pattern=SLUG_PATTERN)]
"""A Home Assistant domain or service name (also a valid subject token)."""

EntityId: TypeAlias = Annotated[str, Field(pattern=ENTITY_ID_PATTERN)]
"""A Home Assistant entity id, `domain.object_id`."""

Identifier: TypeAlias = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
"""An identifier that can be used as one NATS subject token."""

MessageId: TypeAlias = Annotated[
    str, Field(min_length=1, max_length=MESSAGE_ID_MAX_LENGTH, pattern=ID_PATTERN)
]
"""A message-level id: an envelope's `id` (sent as the `Nats-Msg-Id` header), its correlation
and causation ids, an audit record's id. 1 to 512 characters, printable (`ID_PATTERN`): no
control character (it would end or inject a header line), no whitespace (nats-py trims a header
value, so the de-duplication key would differ from the id) and no invisible formatting character
(an id shown in a log or by `rubyctl` must read as what it is)."""

Id: TypeAlias = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
"""An id carried in a payload that producers build message ids from (a command id, a Home
Assistant context id): printable like `MessageId`, and at most 256 characters so that a prefix
plus the id (`outcome.<command_id>`, `audit.cmd.<command_id>`) is still a `MessageId`."""


def _finite(value: _J) -> _J:
    """Refuse NaN and ±Infinity anywhere inside; the error's `loc` context says where."""
    stack: list[tuple[tuple[int | str, ...], JsonValue]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError(
                "finite_number",
                "{at}: NaN and \u00b1Infinity are not JSON numbers",
                {"at": dotted(loc), "loc": loc},
            )
        if isinstance(item, dict):
            stack.extend(((*loc, key), inner) for key, inner in item.items())
        elif isinstance(item, list):
            stack.extend(((*loc, index), inner) for index, inner in enumerate(item))
    return value


JsonObject: TypeAlias = Annotated[dict[str, JsonValue], AfterValidator(_finite)]
"""A JSON object with arbitrary JSON values (never `Any`); NaN and ±Infinity are refused at any
depth (JSON has no such numbers, and they would be re-encoded as `null`)."""

FiniteJson: TypeAlias = Annotated[JsonValue, AfterValidator(_finite)]
"""Any JSON value (an object, an array, text, a number, a boolean or null), with NaN and
±Infinity refused at any depth, as in `JsonObject`."""

HeaderName: TypeAlias = Annotated[str, Field(pattern=HEADER_NAME_PATTERN)]
"""A NATS header name (`HEADER_NAME_PATTERN`)."""

HeaderValue: TypeAlias = Annotated[str, Field(pattern=HEADER_VALUE_PATTERN)]
"""A NATS header value (`HEADER_VALUE_PATTERN`). nats-py trims leading and trailing spaces."""

NatsHeaders: TypeAlias = Annotated[
    dict[HeaderName, HeaderValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": HEADER_NAME_PATTERN},
            "additionalProperties": {"type": "string", "pattern": HEADER_VALUE_PATTERN},
        }
    ),
]
"""NATS headers that can be sent again as they are: every name a `HeaderName`, every value a
`HeaderValue`."""


def sendable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of `headers` that `NatsHeaders` accepts; the others are left out."""
    return {
        name: value
        for name, value in headers.items()
        if _HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value)
    }


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
