"""An append-only, hash-chained store of audit records, in one SQLite file.

Each row holds one `AuditRecordV1` as canonical JSON (the text that is hashed), the columns
queries need, its place in the chain (``seq`` = 1, 2, 3... without gaps) and two hashes:
``prev_hash`` (the previous row's ``hash``; 64 zeros for the first) and
``hash = sha256(prev_hash + "\\n" + seq + "\\n" + record)``. Editing, deleting or reordering a
row therefore breaks the chain at that row, and `AuditStore.verify` names it. Triggers refuse
UPDATE and DELETE, so only someone who bypasses SQLite's rules can change a row, and the chain
shows it; a truncated tail is caught by comparing the head with the one the sink published.

Appending is idempotent on ``record_id``: a redelivered record is skipped. One writer at a
time (the sink); any number of readers (WAL). Plain SQL and hashing in Python keep a PostgreSQL
backend possible: the same table, the same triggers in PL/pgSQL, the same chain (ADR-0019).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ruby_schemas.audit import AuditRecordV1

GENESIS: Final = "0" * 64
"""The ``prev_hash`` of the first record."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq            INTEGER PRIMARY KEY,
    record_id      TEXT NOT NULL UNIQUE,
    occurred_at    TEXT NOT NULL,
    stored_at      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id   TEXT,
    details        TEXT,
    record         TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_occurred ON audit_records (occurred_at);
CREATE INDEX IF NOT EXISTS audit_correlation ON audit_records (correlation_id);
CREATE INDEX IF NOT EXISTS audit_action ON audit_records (action, target);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit store is append-only'); END;
"""

COLUMNS: Final = (
    "record_id",
    "occurred_at",
    "actor",
    "action",
    "target",
    "outcome",
    "reason",
    "correlation_id",
    "causation_id",
    "details",
)
"""The columns copied from the record; `verify` checks each against the hashed text."""


_INSERT: Final = """
INSERT INTO audit_records (
    seq, stored_at, record, prev_hash, hash, record_id, occurred_at, actor, action, target,
    outcome, reason, correlation_id, causation_id, details
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
"""The insert; the record's columns follow the chain's, in the order of `COLUMNS`."""


def canonical(record: AuditRecordV1) -> str:
    """The record as the chain hashes it: JSON, keys sorted, no spaces."""
    return json.dumps(
        record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def chain_hash(prev_hash: str, seq: int, record_text: str) -> str:
    """The hash of the row at ``seq`` holding ``record_text`` after ``prev_hash``."""
    return hashlib.sha256(f"{prev_hash}\n{seq}\n{record_text}".encode()).hexdigest()


def instant(moment: datetime | str) -> str:
    """A UTC instant as the store writes it (fixed width, so text order is time order)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _columns(record_text: str) -> dict[str, Any]:
    d = json.loads(record_text)
    details = d.get("details")
    return {
        "record_id": d["record_id"],
        "occurred_at": instant(d["occurred_at"]),
        "actor": d["actor"],
        "action": d["action"],
        "target": d["target"],
        "outcome": d["outcome"],
        "reason": d["reason"],
        "correlation_id": d["correlation_id"],
        "causation_id": d.get("causation_id"),
        "details": None if details is None else json.dumps(details, sort_keys=True),
    }


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One stored record with its place in the chain."""

    seq: int
    stored_at: str
    hash: str
    record: AuditRecordV1


@dataclass(frozen=True, slots=True)
class Broken:
    """The first row where the chain does not hold, and why."""

    seq: int
    record_id: str | None
    """None when the record is missing altogether."""
    reason: str

    def __str__(self) -> str:
        named = "" if self.record_id is None else f" ({self.record_id})"
        return f"record {self.seq}{named}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verified:
    """What `AuditStore.verify` found: how many rows it checked, the head, the first break."""

    count: int
    head_seq: int
    head_hash: str
    broken: Broken | None = None

    @property
    def ok(self) -> bool:
        """True when every row checked out."""
        return self.broken is None


class AuditStore:
    """One SQLite audit store. Not thread-safe: the writer stays in its thread; a read-only
    store may be used from any thread, one at a time (``asyncio.to_thread``)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no audit store at {self.path}")
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the ack
            self._db.executescript(SCHEMA)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[AuditRecordV1]) -> int:
        """Append the records not stored yet, in order, in one transaction; return how many.

        Durable when it returns (``synchronous=FULL``): acknowledge the messages after it.
        """
        stored = 0
        now = datetime.now(UTC).isoformat()
        with self._db:  # one transaction: all or none
            head = self._db.execute(
                "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (0, GENESIS) if head is None else (head["seq"], head["hash"])
            for record in records:
                exists = self._db.execute(
                    "SELECT 1 FROM audit_records WHERE record_id = ?", (record.record_id,)
                ).fetchone()
                if exists is not None:
                    continue
                text = canonical(record)
                seq += 1
                digest = chain_hash(prev, seq, text)
                row = _columns(text)
                self._db.execute(
                    _INSERT, (seq, now, text, prev, digest, *(row[c] for c in COLUMNS))
                )
                prev = digest
                stored += 1
        return stored

    # --- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """The last row's ``seq`` and ``hash`` (0 and the genesis hash when empty)."""
        row = self._db.execute(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS) if row is None else (int(row["seq"]), str(row["hash"]))

    def count(self) -> int:
        """How many rows the store holds."""
        return int(self._db.execute("SELECT count(*) FROM audit_records").fetchone()[0])

    def verify(self) -> Verified:
        """Walk the chain from the first row; stop at the first row that breaks it."""
        seq, prev = 0, GENESIS
        for row in self._db.execute("SELECT * FROM audit_records ORDER BY seq"):
            reason = _check(row, seq + 1, prev)
            if reason is not None:
                return Verified(seq, seq, prev, Broken(int(row["seq"]), row["record_id"], reason))
            seq, prev = int(row["seq"]), str(row["hash"])
        return Verified(seq, seq, prev)

    def against_head(self, verified: Verified, seq: int, digest: str) -> Broken | None:
        """Why a sound chain (``verified``) still does not hold the head the sink published,
        record ``seq`` with hash ``digest``; None if it does.

        Read the published head *before* walking the chain: the sink publishes a head only
        after storing its rows, so the store walked afterwards holds at least those rows.
        """
        published = f"the sink published record {seq} with hash {digest[:16]}"
        if verified.head_seq < seq:
            return Broken(
                verified.head_seq + 1,
                None,
                f"missing: rows were removed from the end ({published}; the store ends at "
                f"record {verified.head_seq})",
            )
        if seq < 1:
            return None
        row = self._db.execute(
            "SELECT record_id, hash FROM audit_records WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:  # pragma: no cover - the chain is whole up to its head
            return Broken(seq, None, f"missing ({published})")
        if row["hash"] == digest:
            return None
        return Broken(
            seq,
            str(row["record_id"]),
            f"differs from the head the sink published ({published}; the store's is "
            f"{str(row['hash'])[:16]})",
        )

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        correlation_id: str | None = None,
        detail: tuple[str, str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[StoredRecord]:
        """Records matching every filter given, in chain order (or newest first).

        ``action`` and ``target`` match exactly, or as a prefix when they end with ``*``;
        ``detail`` is ``(key, value)``: ``details[key]`` equals ``value`` or, for a list,
        contains it.
        """
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("occurred_at >= ?")
            args.append(instant(since))
        if until is not None:
            where.append("occurred_at < ?")
            args.append(instant(until))
        for column, value in (("actor", actor), ("action", action), ("target", target)):
            if value is None:
                continue
            if value.endswith("*"):
                where.append(f"{column} LIKE ? ESCAPE '\\'")
                args.append(_like_prefix(value[:-1]))
            else:
                where.append(f"{column} = ?")
                args.append(value)
        if correlation_id is not None:
            where.append("correlation_id = ?")
            args.append(correlation_id)
        if detail is not None:
            key, value = detail
            where.append(
                "(json_extract(details, ?) = ? OR EXISTS (SELECT 1 FROM json_each(details, ?) "
                "WHERE json_each.value = ?))"
            )
            path = f'$."{key}"'
            args += [path, value, path, value]
        sql = "SELECT seq, stored_at, hash, record FROM audit_records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in self._db.execute(sql, args):
            yield StoredRecord(
                int(row["seq"]),
                str(row["stored_at"]),
                str(row["hash"]),
                AuditRecordV1.model_validate_json(row["record"]),
            )


def _check(row: sqlite3.Row, seq: int, prev: str) -> str | None:
    """Why ``row`` cannot be the chain's record ``seq`` after ``prev``; None if it can."""
    if row["seq"] != seq:
        return f"record {seq} is missing: a row was deleted"
    if row["prev_hash"] != prev:
        return "it does not follow the record before it: rows were deleted or reordered"
    if chain_hash(prev, seq, row["record"]) != row["hash"]:
        return "its content does not match its hash: the record was edited"
    try:
        columns = _columns(row["record"])
    except (ValueError, KeyError, TypeError):
        return "its record is not readable JSON"
    for column in COLUMNS:
        if columns[column] != row[column]:
            return f"column {column!r} differs from the hashed record: edited"
    return None


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
