"""Dead letters: building them in the runner, and listing, replaying and purging them.

A dead letter keeps the original message byte-exact with its origin (subject, stream,
consumer, stream sequence, delivery count, the headers that can be sent again safely), why it
was given up on, and when handling first and last failed. Its id is derived from the origin
(``dlq.<stream>.<seq>``), so a worker that crashes after dead-lettering and before terminating
the original stores it once. Every dead-lettering, replay and purge also produces an audit
record.
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client
from nats.js.errors import APIError, NotFoundError

from ruby_natsx.audit import audit_record
from ruby_natsx.fate import Fate
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.publish import MSG_ID, Publisher
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import DLQ, stream_name
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.base import Payload
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, make_envelope, new_id
from ruby_schemas.errors import ContractError
from ruby_schemas.primitives import JsonObject, sendable_headers
from ruby_schemas.registry import decode

REPLAYED_FROM = "Ruby-Replayed-From"
GONE = frozenset({10043, 10057})
"""JetStream's error codes for deleting a message that is not (or no longer) there: a sequence
inside the stream's range ("sequence not found"), or past it, or the only one ("no message
found")."""


def dead_letter(
    subjects: Subjects,
    *,
    service: str,
    delivery: Delivery,
    payload: bytes,
    fate: Fate,
    first_failed_at: datetime,
    cause: Envelope[Payload] | None,
) -> list[Outbound]:
    """The dead letter for one delivery, and its audit record, ready to publish."""
    now = datetime.now(UTC)
    letter = DeadLetterV1(
        original_subject=delivery.subject,
        stream=delivery.stream,
        consumer=delivery.consumer,
        stream_sequence=delivery.stream_seq,
        delivery_count=delivery.delivered,
        reason=str(fate.reason),
        error=fate.error,
        first_failed_at=min(first_failed_at, now),
        last_failed_at=now,
        # Replay sends them again: a header that could not be sent safely is left out.
        headers=sendable_headers({k: v for k, v in delivery.headers.items() if k != MSG_ID}),
        original_payload=payload,
    )
    letter_id = f"dlq.{delivery.stream}.{delivery.stream_seq}"
    envelope = make_envelope(
        letter,
        source=f"ruby/{service}",
        message_id=letter_id,
        correlation_id=cause.correlation_id if cause else letter_id,
        causation_id=cause.id if cause else None,
    )
    audit = audit_record(
        subjects,
        service=service,
        action="message.dead_lettered",
        target=f"{delivery.stream}/{delivery.stream_seq}",
        reason=f"{fate.reason}: {fate.error}",
        cause=cause,
        record_id=f"audit.{letter_id}",
        details={"subject": delivery.subject, "consumer": delivery.consumer},
    )
    return [Outbound(subjects.dlq(delivery.stream, delivery.consumer), envelope), audit]


@dataclass(frozen=True)
class Filter:
    """Which dead letters an operation applies to; every field set must match."""

    stream: str | None = None
    consumer: str | None = None
    subject: str | None = None  # a glob on the original subject, such as ruby.cmd.ha.light.*
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def matches(self, letter: DeadLetterV1, now: datetime) -> bool:
        age = now - letter.last_failed_at
        return (
            (self.stream is None or letter.stream == self.stream)
            and (self.consumer is None or letter.consumer == self.consumer)
            and (self.subject is None or fnmatch.fnmatchcase(letter.original_subject, self.subject))
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
        )


@dataclass(frozen=True)
class Stored:
    """A dead letter as stored in the DLQ stream."""

    seq: int
    envelope: Envelope[Payload]
    subject: str = ""
    """The DLQ subject it was stored on (``<p>.dlq.<stream>.<consumer>``): only the service of
    that consumer may publish there, so it says who dead-lettered it."""

    @property
    def letter(self) -> DeadLetterV1:
        data = self.envelope.data
        if not isinstance(data, DeadLetterV1):
            raise TypeError(f"DLQ message {self.seq} is not a dead letter")
        return data


class DeadLetters:
    """Operations on one installation's DLQ stream (used by ``rubyctl dlq``)."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        actor: str = "operator",
        publisher: Publisher | None = None,
    ):
        """``publisher``: one its owner starts and closes (the gateway's API shares its one);
        by default its own, which `close` closes."""
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream_name(subjects, DLQ)
        self._actor = actor
        self._owns_publisher = publisher is None
        self._publisher = publisher or Publisher(nc)

    async def close(self) -> None:
        if self._owns_publisher:
            await self._publisher.close()

    async def list(self, where: Filter = Filter(), *, after: int = 0) -> AsyncIterator[Stored]:
        """Yield the stored dead letters matching ``where``, oldest first, from the first one
        stored after DLQ sequence ``after``."""
        now = datetime.now(UTC)
        info = await self._js.stream_info(self._stream)
        seq = max(info.state.first_seq, after + 1) if info.state.first_seq else 0
        while seq and seq <= info.state.last_seq:
            try:
                raw = await self._js.get_msg(self._stream, seq, next=True)
            except NotFoundError:
                return
            if raw.seq is None:
                return
            seq = raw.seq + 1
            try:
                envelope = decode(raw.data or b"")
            except ContractError:
                continue  # not a dead letter of ours; list only what we can read
            if isinstance(envelope.data, DeadLetterV1) and where.matches(envelope.data, now):
                yield Stored(raw.seq, envelope, raw.subject or "")

    async def get(self, seq: int) -> Stored:
        raw = await self._js.get_msg(self._stream, seq)
        envelope = decode(raw.data or b"")
        if not isinstance(envelope.data, DeadLetterV1):
            raise TypeError(f"DLQ message {seq} is not a dead letter")
        return Stored(seq, envelope, raw.subject or "")

    async def replay(
        self, stored: Stored, *, keep: bool = False, details: JsonObject | None = None
    ) -> int:
        """Republish the original payload to its original subject with a new message id.

        Records the replay in the audit stream (with ``details``, such as who asked for it),
        then removes the dead letter unless ``keep``. Returns the new stream sequence of the
        replayed message.
        """
        letter = stored.letter
        headers: Mapping[str, str] = {**letter.headers, REPLAYED_FROM: str(stored.seq)}
        new_seq = await self._publisher.publish_raw(
            letter.original_subject, letter.original_payload, headers, msg_id=new_id()
        )
        await self._publisher.publish(
            [
                audit_record(
                    self._subjects,
                    service=self._actor,
                    action="message.replayed",
                    target=f"{letter.stream}/{letter.stream_sequence}",
                    reason=f"replayed from DLQ seq {stored.seq} to {letter.original_subject}",
                    cause=stored.envelope,
                    details={**(details or {}), "dlq_seq": stored.seq, "new_seq": new_seq},
                )
            ]
        )
        if not keep:
            await self._delete(stored.seq)  # gone already (deleted meanwhile) is as asked
        return new_seq

    async def purge(self, stored: Stored, *, details: JsonObject | None = None) -> bool:
        """Delete one dead letter for good, and record that in the audit stream (with
        ``details``, such as who asked for it). False, and nothing recorded, when it was gone
        already (deleted meanwhile)."""
        if not await self._delete(stored.seq):
            return False
        await self._publisher.publish(
            [
                audit_record(
                    self._subjects,
                    service=self._actor,
                    action="message.purged",
                    target=f"{stored.letter.stream}/{stored.letter.stream_sequence}",
                    outcome=AuditOutcome.SUCCEEDED,
                    reason=f"purged from DLQ seq {stored.seq}",
                    cause=stored.envelope,
                    details={**(details or {}), "dlq_seq": stored.seq},
                )
            ]
        )
        return True

    async def _delete(self, seq: int) -> bool:
        """Delete the DLQ message at ``seq``; False if there is none (any more)."""
        try:
            return bool(await self._js.delete_msg(self._stream, seq))
        except APIError as exc:
            if exc.err_code in GONE:
                return False
            raise
