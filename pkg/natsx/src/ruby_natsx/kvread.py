"""Reading a whole KV bucket with batched direct gets: no consumer, only read grants.

Services may not create consumers (ADR-0005), so ``KeyValue.keys()``/``watch`` are not open to
them. A bucket whose history is 1 holds, in stream-sequence order, exactly its current entries
and delete markers; paging through it with ``$JS.API.DIRECT.GET.KV_<bucket>`` (``next_by_subj``,
``batch``) reads them all (ADR-0008).
"""

from __future__ import annotations

from nats.aio.client import Client

from ruby_natsx.direct import read_page

PAGE = 1000
"""Entries per direct-get page."""


async def read_bucket(nc: Client, bucket: str, *, within: float = 30.0) -> dict[str, bytes]:
    """Every current key of ``bucket`` and its value; deleted keys are left out.

    Raises ``TimeoutError`` if the server does not answer a page within ``within`` seconds.
    """
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    entries: dict[str, bytes] = {}
    seq = 1
    while True:
        page = await read_page(nc, stream, seq=seq, batch=PAGE, subject=prefix + ">", within=within)
        for stored in page.messages:
            key = stored.subject.removeprefix(prefix)
            if stored.headers.get("KV-Operation") in ("DEL", "PURGE") or not stored.data:
                entries.pop(key, None)
            else:
                entries[key] = stored.data
        if not page.more or not page.messages:
            return entries
        seq = page.messages[-1].seq + 1
