"""A running service's heartbeat file, and the check a container runtime's HEALTHCHECK runs.

While a service runs, `heartbeat` touches ``<RUBY_STATE_DIR>/health/<identity>`` every
`INTERVAL` seconds, but only while its NATS connection is up: a fresh file says the event loop
turns and the service can reach NATS. ``<program> --healthcheck`` (the images' HEALTHCHECK)
exits 0 if the file was touched within `STALE_AFTER` seconds, 1 otherwise, saying why. A clean
stop removes the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

INTERVAL: Final = 5.0
STALE_AFTER: Final = 30.0


def health_file(state_dir: Path, identity: str) -> Path:
    return state_dir / "health" / identity


async def heartbeat(path: Path, connected: Callable[[], bool], interval: float = INTERVAL) -> None:
    """Touch ``path`` every ``interval`` seconds while ``connected()``; until cancelled, then
    remove it."""
    try:
        while True:
            if connected():
                _touch(path)
            await asyncio.sleep(interval)
    finally:
        _remove(path)


def _touch(path: Path) -> None:
    # A metadata write of microseconds, every few seconds: not worth a thread. A state directory
    # that cannot be written leaves no heartbeat: the check then says the service is unhealthy.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def check(path: Path, *, stale_after: float = STALE_AFTER, now: float | None = None) -> str | None:
    """None when ``path`` was touched within ``stale_after`` seconds; else why not."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat at {path}: the service is not running (or not connected yet)"
    if age > stale_after:
        return f"heartbeat {age:.0f} s old (more than {stale_after:.0f} s): stuck, or NATS is away"
    return None
