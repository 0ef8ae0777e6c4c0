"""Reading a stream in sequence order with batched direct gets: no consumer, read grants only.

Services may not create consumers (ADR-0005). ``$JS.API.DIRECT.GET.<stream>`` with ``seq``,
``batch`` and ``next_by_subj`` answers with up to ``batch`` stored messages from ``seq`` on,
each carrying its stream sequence, then an end-of-batch status; the stream must allow direct
gets. `read_page` is one such request; `ruby_natsx.kvread` pages through a bucket with it and the
gateway's event stream (``/api/v1/ws``) tails EVENTS with it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg

MAX_PAGE_BYTES: Final = 1024 * 1024
"""The server stops a page at about this many bytes, whatever ``batch`` says."""


class DirectGetError(RuntimeError):
    """The server answered a direct get with an error status (the stream is missing, or does
    not allow direct gets)."""


@dataclass(frozen=True)
class Stored:
    """One stored message as a direct get returns it."""

    seq: int
    subject: str
    time: str
    """When the stream stored it (RFC 3339, as the server writes it)."""
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Page:
    """Up to ``batch`` messages from the asked sequence on, and whether more are stored."""

    messages: tuple[Stored, ...]
    more: bool


async def read_page(
    nc: Client, stream: str, *, seq: int, batch: int, subject: str, within: float = 10.0
) -> Page:
    """The stored messages of ``stream`` matching ``subject`` (wildcards allowed) from
    sequence ``seq`` on, at most ``batch`` of them, in sequence order.

    Raises ``TimeoutError`` if the server does not finish the page within ``within`` seconds,
    `DirectGetError` on an error status. Cancelling it unsubscribes its inbox.
    """
    page: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        page.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    messages: list[Stored] = []
    try:
        request = {"seq": seq, "batch": batch, "next_by_subj": subject, "max_bytes": MAX_PAGE_BYTES}
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), inbox)
        async with asyncio.timeout(within):
            while True:
                msg = await page.get()
                headers = dict(msg.headers or {})
                status = headers.get("Status")
                if status == "404":  # nothing (more) from seq on
                    return Page(tuple(messages), more=False)
                if status == "204":  # the end of this page
                    return Page(tuple(messages), headers.get("Nats-Num-Pending", "0") != "0")
                if status is not None:
                    reason = headers.get("Description", "")
                    raise DirectGetError(f"direct get on {stream}: {status} {reason}".strip())
                messages.append(
                    Stored(
                        seq=int(headers["Nats-Sequence"]),
                        subject=headers["Nats-Subject"],
                        time=headers.get("Nats-Time-Stamp", ""),
                        data=msg.data,
                        headers=headers,
                    )
                )
    finally:
        await sub.unsubscribe()
