"""Service status records: what a service writes about itself under its own status key.

A record is a `ruby_schemas.status.ServiceRecord` (``ready`` and ``updated``, and what each
service adds). Readiness checks (`rubyctl up`, tests) need it ready *and* written after a given
time, so a record a killed process left behind does not count.
"""

from __future__ import annotations

from datetime import datetime

import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_schemas.status import ServiceRecord, StatusRecordError, read_record


def fresh_ready(data: bytes | None, since: datetime | None) -> bool:
    """Whether a status record says ``ready: true`` and was written after ``since``.

    A record that is not a `ServiceRecord` (or none at all) is not ready.
    """
    try:
        record = read_record(ServiceRecord, data or b"", key="status")
    except StatusRecordError:
        return False
    return record.ready and (since is None or record.updated > since)


async def status_ready(kv: KeyValue, key: str, since: datetime | None = None) -> bool:
    """Whether the record ``key`` of the status bucket ``kv`` is ready and fresh."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, nats.errors.TimeoutError):
        return False
    return fresh_ready(entry.value, since)
