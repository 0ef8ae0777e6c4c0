"""The audit API: the sink answers query, why and verify over NATS request/reply (ADR-0036).

The gateway's ``GET /audit...`` routes ask on ``<p>.api.audit.<verb>``; a service never reads
another's files, so the store's owner answers. Each request is read from its own read-only
connection to the store, in a worker thread: the sink's consuming (the runner, the writer)
never waits for an answer. A request that is not the verb's contract, or that the store cannot
answer, gets an `AuditApiErrorV1` reply, never silence; nothing here writes.

Concurrency: one subscription per verb (queue group ``audit_sink``); nats-py runs each
subscription's callback one message at a time, so at most one answer per verb is in flight.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ruby_auditstore import AuditStore
from ruby_auditstore.answers import records, verification
from ruby_auditstore.why import follow
from ruby_natsx.connection import flushed
from ruby_natsx.lookup import StateChanges
from ruby_natsx.status import read_audit_head
from ruby_natsx.subjects import AUDIT_API, Subjects
from ruby_natsx.topology import AUDIT_SINK as IDENTITY
from ruby_schemas.audit_api import (
    AuditApiErrorV1,
    AuditQueryV1,
    AuditVerifyV1,
    AuditWhyV1,
    FieldProblem,
    StateLink,
)
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import decode, encode

log = structlog.get_logger("ruby_audit_sink.answers")

SOURCE: Final = f"ruby/{IDENTITY}"
Answer = Callable[[Envelope[Payload]], Awaitable[Payload]]


class StoreUnreadableError(Exception):
    """The store cannot be opened or read; the message says why (no secret in it)."""


class Answers:
    """Subscribes to the audit API's request subjects and answers each request once."""

    def __init__(self, nc: Client, subjects: Subjects, db: Path) -> None:
        self._nc, self._subjects, self._db = nc, subjects, db
        self._changes = StateChanges(nc, subjects)
        self._subs: list[Subscription] = []
        self._verbs: dict[str, tuple[type[Payload], Answer]] = {
            "query": (AuditQueryV1, self._query),
            "why": (AuditWhyV1, self._why),
            "verify": (AuditVerifyV1, self._verify),
        }

    async def start(self) -> None:
        """Subscribe; requests are answered from here on."""
        for verb in self._verbs:
            subject = self._subjects.api(AUDIT_API, verb)
            self._subs.append(
                await self._nc.subscribe(subject, queue=IDENTITY, cb=self._callback(verb))
            )
        await flushed(self._nc)  # in place before anyone is told the sink is up

    async def close(self) -> None:
        """Stop answering (a request in flight is answered first: drain)."""
        for sub in self._subs:
            try:
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
            except nats.errors.Error:  # the connection is closing anyway
                log.debug("answers not drained", subject=sub.subject)
        self._subs.clear()

    def _callback(self, verb: str) -> Callable[[Msg], Awaitable[None]]:
        async def answer(msg: Msg) -> None:
            reply = await self.answer(verb, msg.data)
            if msg.reply:
                await msg.respond(reply)

        return answer

    async def answer(self, verb: str, data: bytes) -> bytes:
        """The encoded reply to one request of ``verb``: its answer, or an error."""
        contract, answer = self._verbs[verb]
        try:
            request = decode(data)
        except ContractError as exc:
            return self._error(None, _invalid(exc))
        if not isinstance(request.data, contract):
            problem = FieldProblem(field="type", message=f"a {verb} request is {contract.TYPE}")
            return self._error(request, _refused(f"not a {verb} request", problem))
        try:
            payload = await answer(request)
        except StoreUnreadableError as exc:
            log.warning("audit request not answered", verb=verb, reason=str(exc))
            return self._error(request, AuditApiErrorV1(code="unavailable", detail=str(exc)))
        return encode(make_envelope(payload, source=SOURCE, cause=request))

    def _error(self, request: Envelope[Payload] | None, error: AuditApiErrorV1) -> bytes:
        return encode(make_envelope(error, source=SOURCE, cause=request))

    # --- the verbs -------------------------------------------------------------------------

    async def _query(self, request: Envelope[Payload]) -> Payload:
        query = request.data
        assert isinstance(query, AuditQueryV1)  # noqa: S101 - `answer` checked the contract
        return await asyncio.to_thread(self._read, lambda store: records(store, query))

    async def _verify(self, _request: Envelope[Payload]) -> Payload:
        try:  # read before the walk: the head is published only after its rows are stored
            head = await read_audit_head(self._nc, self._subjects)
        except ValueError:  # unreadable: the file alone is checked
            head = None
        published = None if head is None else (head.seq, head.hash)
        return await asyncio.to_thread(self._read, lambda store: verification(store, published))

    async def _why(self, request: Envelope[Payload]) -> Payload:
        why = request.data
        assert isinstance(why, AuditWhyV1)  # noqa: S101 - `answer` checked the contract
        start = StateLink(
            entity_id=why.entity_id,
            context_id=why.context_id,
            state=why.state,
            changed_at=why.changed_at,
        )
        store = await asyncio.to_thread(self._open)
        try:
            return await follow(store, self._changes, start)
        except sqlite3.Error as exc:
            raise StoreUnreadableError(f"the audit store is not readable: {exc}") from exc
        except nats.errors.TimeoutError as exc:
            raise StoreUnreadableError("EVENTS did not answer in time") from exc
        finally:
            store.close()

    def _open(self) -> AuditStore:
        try:
            return AuditStore(self._db, readonly=True)
        except (FileNotFoundError, sqlite3.Error) as exc:
            raise StoreUnreadableError(f"the audit store cannot be opened: {exc}") from exc

    def _read(self, read: Callable[[AuditStore], Payload]) -> Payload:
        store = self._open()
        try:
            return read(store)
        except sqlite3.Error as exc:
            raise StoreUnreadableError(f"the audit store is not readable: {exc}") from exc
        finally:
            store.close()


def _invalid(exc: ContractError) -> AuditApiErrorV1:
    problems = [
        FieldProblem(field=e.path.removeprefix("data.") or "body", message=e.message)
        for e in exc.errors
    ]
    return _refused("the request is not the audit API's contract", *problems)


def _refused(detail: str, *problems: FieldProblem) -> AuditApiErrorV1:
    return AuditApiErrorV1(code="invalid-request", detail=detail, errors=tuple(problems))
