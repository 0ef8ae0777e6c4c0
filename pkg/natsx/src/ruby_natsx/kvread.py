"""Reading a whole KV bucket with batched direct gets: no consumer, only read grants.

Services may not create consumers (ADR-0005), so ``KeyValue.keys()``/``watch`` are not open to
them. A bucket whose history is 1 holds, in stream-sequence order, exactly its current entries
and delete markers; paging through it with ``$JS.API.DIRECT.GET.KV_<bucket>`` (``next_by_subj``,
``batch``) reads them all (ADR-0008).
"""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client
from nats.aio.msg import Msg

PAGE = 1000
"""Entries per direct-get page."""


async def read_bucket(nc: Client, bucket: str, *, within: float = 30.0) -> dict[str, bytes]:
    """Every current key of ``bucket`` and its value; deleted keys are left out.

    Raises ``TimeoutError`` if the server does not answer within ``within`` seconds.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    entries: dict[str, bytes] = {}
    page: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        page.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    try:
        async with asyncio.timeout(within):
            seq = 1
            while True:
                request = {"seq": seq, "batch": PAGE, "next_by_subj": prefix + ">"}
                await nc.publish(
                    f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), inbox
                )
                while True:
                    msg = await page.get()
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":  # nothing (more) in the bucket
                        return entries
                    if status is not None:  # 204: the end of this page
                        if headers.get("Nats-Num-Pending", "0") == "0":
                            return entries
                        break
                    seq = int(headers["Nats-Sequence"]) + 1
                    key = headers["Nats-Subject"].removeprefix(prefix)
                    if headers.get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
                        entries.pop(key, None)
                    else:
                        entries[key] = msg.data
    finally:
        await sub.unsubscribe()
