"""Service status records: what a service writes about itself under its own status key.

A record is a `ruby_schemas.status.ServiceRecord` (``ready`` and ``updated``, and what each
service adds). Readiness checks (`rubyctl up`, tests) need it ready *and* written after a given
time, so a record a killed process left behind does not count.
"""

from __future__ import annotations

from datetime import datetime

import nats.errors
from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import AUDIT_HEAD_KEY, STATUS, topology
from ruby_schemas.status import AuditHeadRecord, ServiceRecord, StatusRecordError, read_record


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


async def read_audit_head(nc: Client, subjects: Subjects) -> AuditHeadRecord | None:
    """The audit store's head the sink published; None if it never did.

    ``StatusRecordError`` (a ``ValueError``) if it is not the contract."""
    bucket = topology(subjects).bucket(STATUS).bucket
    try:
        kv = await nc.jetstream().key_value(bucket)
        entry = await kv.get(AUDIT_HEAD_KEY)
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    if not entry.value:
        return None
    return read_record(AuditHeadRecord, entry.value, key=AUDIT_HEAD_KEY)
