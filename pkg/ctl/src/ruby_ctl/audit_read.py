"""What the ``rubyctl audit`` verbs share: the store's place, opening it, the NATS connection."""

from __future__ import annotations

import argparse
import os
import sqlite3
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client

from ruby_auditstore import AuditStore
from ruby_ctl.operator import CONNECT_TIMEOUT, connect_cli
from ruby_ctl.rules_live import display_zone
from ruby_runtime.errors import StartupError


def default_db() -> Path:
    """``RUBY_AUDIT_DB``, else ``<RUBY_STATE_DIR>/audit/audit.db`` (the sink's default)."""
    given = os.environ.get("RUBY_AUDIT_DB")
    if given:
        return Path(given)
    return Path(os.environ.get("RUBY_STATE_DIR", ".ruby")) / "audit" / "audit.db"


class StoreError(Exception):
    """The audit store cannot be opened or read; the message says what to do."""


def open_store(args: argparse.Namespace) -> AuditStore:
    """The store of ``--db`` (or the default), read-only; `StoreError` if absent."""
    path: Path = args.db or default_db()
    try:
        return AuditStore(path, readonly=True)
    except FileNotFoundError:
        raise StoreError(
            f"no audit store at {path}: the audit sink creates it when it starts "
            "(pass --db PATH or set RUBY_AUDIT_DB if it lives elsewhere)"
        ) from None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the audit store {path}: {exc}") from None


def unreadable(store: AuditStore, exc: sqlite3.Error) -> StoreError:
    return StoreError(f"{store.path} is not a readable audit store: {exc}")


async def connect_nats(args: argparse.Namespace) -> Client:
    """As the operator (Vault AppRole, NKEY, TLS) unless --nats-url names an open server.

    Raises ``ConnectionError`` with a one-line reason when NATS cannot be reached in time or
    refuses; the caller decides whether that is fatal.
    """
    where = args.nats_url or "NATS"
    try:
        return await connect_cli(args.nats_url)
    except TimeoutError:
        raise ConnectionError(
            f"{where} did not answer within {CONNECT_TIMEOUT}s (is `make run` running?)"
        ) from None
    except StartupError as exc:
        raise ConnectionError(str(exc)) from None


def when(moment: datetime) -> str:
    """A time as the audit commands show it: in RUBY_TIMEZONE (default local), to the second."""
    return moment.astimezone(display_zone()).strftime("%Y-%m-%d %H:%M:%S")
