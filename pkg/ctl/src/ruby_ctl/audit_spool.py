"""Audit records written before NATS runs (bootstrap), kept on disk until they can be published.

`rubyctl bootstrap` changes Vault and the NATS configuration, often while no nats-server runs
(it is what makes one possible). Its ``bootstrap.changed`` records go to
``<state>/audit/spool.jsonl``; `rubyctl up` publishes them as the operator once the topology is
applied, then removes the file. Each record's id is its ``Nats-Msg-Id`` and the sink is
idempotent on it, so a crash between publishing and removing stores nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import structlog
from nats.aio.client import Client

from ruby_natsx.audit import audit_record
from ruby_natsx.handler import Outbound
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.subjects import Subjects
from ruby_schemas.registry import encode

log = structlog.get_logger("ruby_ctl.audit_spool")


def spool_path(state_root: Path) -> Path:
    """Where the spool lives under a state directory."""
    return state_root / "audit" / "spool.jsonl"


def spool(state_root: Path, records: Sequence[Outbound]) -> int:
    """Append audit records to the spool; return how many."""
    if not records:
        return 0
    path = spool_path(state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as spool_file:
        for out in records:
            line = {"subject": out.subject, "data": encode(out.envelope).decode()}
            spool_file.write(json.dumps(line) + "\n")
    return len(records)


def spool_bootstrap(state_root: Path, prefix: str, changes: Sequence[str]) -> int:
    """Spool one ``bootstrap.changed`` record per change; return how many."""
    subjects = Subjects(prefix)
    return spool(
        state_root,
        [
            audit_record(
                subjects,
                service=OPERATOR,
                action="bootstrap.changed",
                target=change.split(":", 1)[0],
                reason=change,
                details={"prefix": prefix},
            )
            for change in changes
        ],
    )


async def flush(nc: Client, state_root: Path) -> int:
    """Publish every spooled record (waiting for JetStream's acks), then remove the spool."""
    path = spool_path(state_root)
    if not path.is_file():
        return 0
    js = nc.jetstream()
    published = 0
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            line = json.loads(text)
            subject, data = str(line["subject"]), str(line["data"]).encode()
            record_id = str(json.loads(data)["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable audit spool line skipped", file=str(path), line=number)
            continue
        await js.publish(subject, data, headers={"Nats-Msg-Id": record_id})
        published += 1
    path.unlink()
    return published
