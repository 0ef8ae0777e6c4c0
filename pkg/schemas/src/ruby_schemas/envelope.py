"""The envelope every message travels in: CloudEvents attribute names around a typed payload."""

from __future__ import annotations

import functools
import os
import random
import time as _time
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import Field, SerializeAsAny, model_validator

from ruby_schemas.base import Contract, Payload
from ruby_schemas.primitives import TYPE_PATTERN, MessageId, NonEmptyStr, UtcDatetime

PayloadT = TypeVar("PayloadT", bound=Payload)
PayloadT_co = TypeVar("PayloadT_co", bound=Payload, covariant=True)


class Envelope(Contract, Generic[PayloadT_co]):
    """One message: who sent it, when, why (correlation / causation), and its typed `data`.

    Build one with `make_envelope`; read one with `ruby_schemas.decode`. The `type` always equals
    `data.TYPE`, so a consumer can dispatch on either.
    """

    specversion: Literal["1.0"] = "1.0"
    """The CloudEvents specification version."""
    id: MessageId
    """Unique per message; also the JetStream `Nats-Msg-Id` used for de-duplication."""
    type: Annotated[str, Field(pattern=TYPE_PATTERN)]
    """The payload's versioned type, such as `ha.state_changed.v1`."""
    source: NonEmptyStr
    """The producer, such as `ruby/gateway`."""
    time: UtcDatetime
    """When the occurrence happened (UTC)."""
    correlation_id: MessageId
    """Shared by every message of one automation run; the id of the first message in it."""
    causation_id: MessageId | None = None
    """The id of the message that directly caused this one, if any."""
    data: SerializeAsAny[PayloadT_co]
    """The typed payload."""

    @model_validator(mode="after")
    def _type_matches_payload(self) -> Self:
        declared = getattr(type(self.data), "TYPE", None)
        if self.type != declared:
            raise ValueError(f"type {self.type!r} does not match the payload's type {declared!r}")
        return self


_RANDOM = random.Random(os.urandom(32))  # noqa: S311 - ids need uniqueness, not secrecy
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))


def new_id() -> str:
    """Return a fresh, time-ordered message id in UUIDv7 layout (RFC 9562), as a string.

    The first 48 bits are the Unix time in milliseconds, so ids sort roughly by creation time;
    74 random bits from a per-process generator seeded by the OS (and reseeded in a forked
    child) make a collision practically impossible. Ids are unique, not secret: a system call
    per id cost ~15 us on a small VM, a fifth of a message's budget. Safe from any thread.
    """
    millis = _time.time_ns() // 1_000_000
    rand = _RANDOM.getrandbits(80)
    rand_a = (rand >> 62) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.cache
def envelope_class(payload_class: type[PayloadT]) -> type[Envelope[PayloadT]]:
    """Return `Envelope[payload_class]`, the model that validates that payload's messages."""
    return Envelope[payload_class]  # type: ignore[valid-type]


def make_envelope(
    payload: PayloadT,
    *,
    source: str,
    cause: Envelope[Any] | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    time: datetime | None = None,
    message_id: str | None = None,
) -> Envelope[PayloadT]:
    """Wrap `payload` in a new envelope whose `type` is the payload's `TYPE`.

    `id` defaults to `new_id()` and `time` to now (UTC). Pass `cause` (the message being handled)
    to continue its automation run: correlation_id becomes the cause's correlation_id and
    causation_id the cause's id. Without a cause, correlation_id defaults to the new id, starting
    a new run. Raises `ValueError` if `cause` is combined with explicit correlation or causation
    ids, or if any value breaks the envelope's contract.
    """
    if cause is not None:
        if correlation_id is not None or causation_id is not None:
            raise ValueError("pass either cause or correlation_id / causation_id, not both")
        correlation_id, causation_id = cause.correlation_id, cause.id
    envelope_id = message_id or new_id()
    return envelope_class(type(payload))(
        id=envelope_id,
        type=payload.TYPE,
        source=source,
        time=time or datetime.now(UTC),
        correlation_id=correlation_id or envelope_id,
        causation_id=causation_id,
        data=payload,
    )
