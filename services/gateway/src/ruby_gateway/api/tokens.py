"""The API tokens the gateway knows: the api-tokens bucket, followed (ADR-0020).

`TokenBook.follow` subscribes to every put of the bucket first, then reads every key, so no
change made while it reads is lost; afterwards each put (a token created, a token revoked)
replaces the record at once. `TokenBook.check` says whose token a request carries, or why it
is refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ruby_natsx.connection import flushed
from ruby_natsx.kvread import read_bucket
from ruby_runtime.api_tokens import matches, token_id
from ruby_schemas.api_tokens import ApiTokenRecord, ApiTokenRecordError, read_token_record

log = structlog.get_logger("ruby_gateway.api.tokens")

DELETED = ("DEL", "PURGE")


@dataclass(frozen=True)
class Verdict:
    """Whose token it is, or the reason it opens nothing (``missing``, ``malformed``,
    ``unknown``, ``expired``, ``revoked``)."""

    record: ApiTokenRecord | None
    reason: str = ""


class TokenBook:
    """Token id -> record, kept current from the bucket while `follow`'s subscription lives."""

    def __init__(self) -> None:
        self._records: dict[str, ApiTokenRecord] = {}
        self._sub: Subscription | None = None

    def __len__(self) -> int:
        return len(self._records)

    async def follow(self, nc: Client, bucket: str) -> None:
        """Receive every put, then read the bucket; puts received meanwhile apply after it."""
        pending: list[Msg] = []
        loaded = asyncio.Event()

        async def on_put(msg: Msg) -> None:
            if loaded.is_set():
                self._apply(msg.subject.rsplit(".", 1)[-1], msg)
            else:
                pending.append(msg)

        self._sub = await nc.subscribe(f"$KV.{bucket}.>", cb=on_put)
        await flushed(nc)  # every put from here on reaches on_put
        for key, raw in (await read_bucket(nc, bucket)).items():
            self._store(key, raw)
        for msg in pending:
            self._apply(msg.subject.rsplit(".", 1)[-1], msg)
        loaded.set()
        log.info("api tokens loaded", known=len(self._records))

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    def _apply(self, key: str, msg: Msg) -> None:
        if (msg.headers or {}).get("KV-Operation") in DELETED:
            self._records.pop(key, None)
        else:
            self._store(key, msg.data)

    def _store(self, key: str, raw: bytes) -> None:
        try:
            record = read_token_record(raw)
        except ApiTokenRecordError as exc:  # not ours to trust: it opens nothing
            log.error("unreadable api token record ignored", key=key, error=str(exc))  # noqa: TRY400 - described; no traceback helps
            self._records.pop(key, None)
            return
        if record.id == key:
            self._records[key] = record
        else:
            log.error("api token record under another id ignored", key=key)

    def check(self, token: str | None, now: datetime | None = None) -> Verdict:
        """The record ``token`` belongs to, if it is current; otherwise why not."""
        if not token:
            return Verdict(None, "missing")
        found = token_id(token)
        if found is None:
            return Verdict(None, "malformed")
        record = self._records.get(found)
        if record is None or not matches(token, record.digest):
            return Verdict(None, "unknown")
        refusal = record.refusal(now or datetime.now(UTC))
        return Verdict(None, refusal) if refusal else Verdict(record)
