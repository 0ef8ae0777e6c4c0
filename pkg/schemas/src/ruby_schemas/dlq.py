"""Dead letters: a message its consumer gave up on, with its origin and the reason."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ruby_schemas.base import Payload
from ruby_schemas.primitives import NatsHeaders, NonEmptyStr, RawBytes, UtcDatetime


class DeadLetterV1(Payload):
    """A message that could not be handled, kept byte-exact so it can be replayed."""

    TYPE: ClassVar[str] = "dlq.dead_letter.v1"

    original_subject: NonEmptyStr
    """The subject the message was published on."""
    stream: NonEmptyStr
    """The stream it was consumed from."""
    consumer: NonEmptyStr
    """The durable consumer that gave up on it."""
    stream_sequence: int = Field(ge=1)
    """Its sequence number in `stream`."""
    delivery_count: int = Field(ge=1)
    """How many times it was delivered before it was dead-lettered."""
    reason: NonEmptyStr
    """Why it was given up on, such as `undecodable`, `permanent_error` or `max_deliveries`."""
    error: str
    """The last error, as text."""
    first_failed_at: UtcDatetime
    """When handling it first failed."""
    last_failed_at: UtcDatetime
    """When handling it last failed."""
    headers: NatsHeaders = Field(default_factory=dict)
    """The original message's NATS headers, which replay sends again; so every name is an RFC
    7230 token and no value holds a control character. `sendable_headers` leaves out those that
    could not be sent again safely."""
    original_payload: RawBytes
    """The original message body, untouched (base64 in JSON)."""
