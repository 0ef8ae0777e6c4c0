"""Idempotency: a key per message and an expiring ledger of what was already done (ADR-0025).

The ledger is a JetStream KV bucket whose entries expire after ``window`` (the bucket's
max age, ``tuning.IDEMPOTENCY_TTL``, a week: far longer than any redelivery or the streams'
duplicate windows). Each key moves ``absent -> pending -> done``, by compare-and-set on the
entry's revision, so concurrent consumers of one message cannot both run it:

- ``claim`` creates the key as pending; if it exists and is done, the recorded outputs are
  returned instead; if it is pending and younger than the lease, another worker has it (a
  transient error: retried later); if the lease ran out, its worker died and the claim is
  taken over.
- ``complete`` records the handler's outputs (revision-checked); ``release`` removes a
  pending claim after a failure so that the retry can claim at once.
- A pending claim of this very store that no handler holds any more (its completion and
  release failed, NATS being away at that moment) is taken over at once, like a dead one.
- A store for a singleton (``singleton=True``: one process of the service runs at a time, as
  the gateway does) takes over a pending claim of another owner at once: that owner was an
  earlier process of the service, and it died. The handler learns of the take-over through
  `taken_over()` (when the dead process claimed the key), so that it can find out whether
  its external effect happened before the crash. If that run fails, ``release`` hands the
  claim back as the dead process left it, so every retry still knows.

A duplicate returns the recorded outputs: the runner publishes them again with the same
``Nats-Msg-Id``, so a crash between completing and publishing loses nothing, and JetStream
stores them once.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ruby_natsx import tuning
from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Delivery, Handler, Middleware, Outbound
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope
from ruby_schemas.registry import decode, encode

KeyFunction = Callable[[Envelope[Payload], Delivery], str]


def message_key(envelope: Envelope[Payload], delivery: Delivery) -> str:
    """The default key: this consumer has handled this message id."""
    return f"{delivery.stream}.{delivery.consumer}.{envelope.id}"


@dataclass(frozen=True)
class TakenOver:
    """A pending claim left by a process that died: who held it, since when (epoch seconds)."""

    owner: str
    since: float


@dataclass(frozen=True)
class Claim:
    key: str
    revision: int
    taken_over: TakenOver | None = None


_TAKEN_OVER: contextvars.ContextVar[TakenOver | None] = contextvars.ContextVar(
    "ruby_idempotency_taken_over", default=None
)


def taken_over() -> TakenOver | None:
    """Inside a handler run by `idempotent`: the dead claim this run took over, else None."""
    return _TAKEN_OVER.get()


@dataclass(frozen=True)
class Done:
    outputs: tuple[Outbound, ...]


class KvIdempotencyStore:
    """The ledger on a KV bucket. Safe for any number of concurrent workers and processes."""

    def __init__(
        self,
        kv: KeyValue,
        *,
        owner: str,
        lease: float = tuning.IDEMPOTENCY_LEASE,
        singleton: bool = False,
    ) -> None:
        self._kv = kv
        self._owner = owner
        self._lease = lease
        self._singleton = singleton
        self._active: set[str] = set()

    async def claim(self, key: str) -> Claim | Done:
        """Take the key for this worker, or return what was done under it already."""
        pending = self._pending()
        try:
            claim = Claim(key, await self._kv.create(key, pending))
        except KeyWrongLastSequenceError:
            pass
        else:
            self._active.add(key)
            return claim
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:  # released or expired between the two calls
            raise TransientError(f"idempotency key {key} changed while claiming") from None
        record = json.loads(entry.value or b"{}")
        if record.get("state") == "done":
            return Done(tuple(_outbound(o) for o in record["outputs"]))
        since = float(record.get("since", 0))
        owner = str(record.get("owner"))
        # This process's own pending claim that no handler of it holds any more (completing and
        # releasing it failed, NATS being away) is as dead as another process's.
        orphaned = owner == self._owner and key not in self._active
        dead = orphaned or (self._singleton and owner != self._owner)
        if not dead and time.time() - since < self._lease:
            raise TransientError(f"{key} is being handled by {owner}")
        try:
            revision = await self._kv.update(key, pending, last=entry.revision)
        except KeyWrongLastSequenceError:
            raise TransientError(f"{key} was taken over by another worker") from None
        self._active.add(key)
        return Claim(key, revision, TakenOver(owner, since))

    async def complete(self, claim: Claim, outputs: Sequence[Outbound]) -> None:
        """Record the outputs; raise TransientError if the claim was lost meanwhile."""
        record = {"state": "done", "outputs": [_record(o) for o in outputs]}
        try:
            await self._kv.update(claim.key, json.dumps(record).encode(), last=claim.revision)
        except KeyWrongLastSequenceError:
            raise TransientError(f"lost the claim on {claim.key} while handling it") from None
        finally:
            self._active.discard(claim.key)

    async def release(self, claim: Claim) -> None:
        """Give up a claim after a failure; a lost claim is left to its new owner.

        A claim taken over from a dead process is handed back as that process left it (its
        owner, its ``since``), not deleted: the retry takes it over again and learns, through
        `taken_over()`, that the dead process may have done the work. Deleted, the retry would
        claim a fresh key and do the work a second time."""
        try:
            with contextlib.suppress(KeyWrongLastSequenceError):
                dead = claim.taken_over
                if dead is None:
                    await self._kv.delete(claim.key, last=claim.revision)
                else:
                    record = {"state": "pending", "owner": dead.owner, "since": dead.since}
                    await self._kv.update(
                        claim.key, json.dumps(record).encode(), last=claim.revision
                    )
        finally:
            self._active.discard(claim.key)

    def _pending(self) -> bytes:
        return json.dumps({"state": "pending", "owner": self._owner, "since": time.time()}).encode()


def idempotent(store: KvIdempotencyStore, key: KeyFunction = message_key) -> Middleware:
    """Run the handler at most once per key (within the ledger's window); see module doc."""

    def wrap(handler: Handler) -> Handler:
        async def once(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
            claimed = await store.claim(key(envelope, delivery))
            if isinstance(claimed, Done):
                return claimed.outputs
            token = _TAKEN_OVER.set(claimed.taken_over)
            try:
                outputs = await handler(envelope, delivery)
            except BaseException:
                await store.release(claimed)
                raise
            finally:
                _TAKEN_OVER.reset(token)
            await store.complete(claimed, outputs)
            return outputs

        return once

    return wrap


def _record(outbound: Outbound) -> dict[str, object]:
    return {
        "subject": outbound.subject,
        "headers": dict(outbound.headers),
        "envelope": encode(outbound.envelope).decode(),
    }


def _outbound(record: dict[str, object]) -> Outbound:
    headers = record.get("headers") or {}
    if not isinstance(headers, dict):
        raise TypeError("idempotency record headers must be an object")
    return Outbound(str(record["subject"]), decode(str(record["envelope"])), headers)
