"""Watching the rules directory: which rule files changed, for as long as the engine runs.

`watch` survives everything a rules directory can hold: a reload that raises is logged and the
next change is still seen; watchfiles itself failing (it raises on a file name that is not
UTF-8, which anyone can drop into the directory) restarts the watch after a pause, with a
full rescan so that nothing changed meanwhile is missed. Only `stopping` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog
from watchfiles import awatch

from ruby_rules.files import shown_name
from ruby_rules.loader import RULE_FILE_GLOB

log = structlog.get_logger("ruby_engine")

Reload = Callable[[Sequence[str]], Awaitable[object]]
"""Reload the named rule files (names relative to the directory)."""

RESTART_AFTER = 1.0
"""Seconds before watching again after watchfiles failed."""


async def watch(
    directory: Path,
    reload: Reload,
    rescan: Callable[[], Sequence[str]],
    stopping: asyncio.Event,
    *,
    debounce_ms: int = 200,
) -> None:
    """Call ``reload`` with the rule files that changed, until ``stopping`` is set.

    After watchfiles fails, ``reload(rescan())`` reloads every file before watching again.
    """
    while not stopping.is_set():
        try:
            await _watch(directory, reload, stopping, debounce_ms)
        except Exception:  # the watcher must outlive whatever is in the directory
            log.exception("watching rule files failed; watching again after a rescan")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RESTART_AFTER)
            if not stopping.is_set():
                await _reload(reload, rescan())


async def _watch(directory: Path, reload: Reload, stopping: asyncio.Event, debounce: int) -> None:
    async for changes in awatch(directory, stop_event=stopping, debounce=debounce, recursive=False):
        names = sorted(
            {
                Path(path).name
                for _, path in changes
                if Path(path).match(RULE_FILE_GLOB) and Path(path).parent == directory
            }
        )
        if names:
            await _reload(reload, names)


async def _reload(reload: Reload, names: Sequence[str]) -> None:
    try:
        await reload(names)
    except Exception:  # logged; the next change of these files is still seen
        log.exception("rule files not reloaded", files=[shown_name(name) for name in names])
