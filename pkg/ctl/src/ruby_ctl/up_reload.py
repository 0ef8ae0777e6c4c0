"""``rubyctl up --reload``: restart a service when its Python source changes (ADR-0010).

The services run from this workspace's editable install, so their source is the checkout's.
`sources` maps each source directory to the services that run its code: a service's own
package restarts that service; a shared package (schemas, natsx, runtime, rules, the audit
store) restarts every service; the simulator's package restarts the demo home. nats-server and
OpenBao are never restarted: their state is what the edit-and-see loop keeps. A package
installed as a wheel (not from this checkout) is not watched, and `rubyctl up` says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from watchfiles import PythonFilter, awatch

OWN = {
    "ruby_audit_sink": ("audit",),
    "ruby_gateway": ("gateway",),
    "ruby_engine": ("engine",),
    "ruby_hasim": ("hasim",),
}
"""Each service's own package, and the process names of `rubyctl up` that run it."""
SHARED = ("ruby_schemas", "ruby_natsx", "ruby_runtime", "ruby_rules", "ruby_auditstore")
"""Packages every service imports: a change restarts them all."""
EVERY_SERVICE = ("audit", "gateway", "engine")
DEBOUNCE_MS = 300
"""An editor's save is often several writes: one restart for them."""


def package_dir(name: str) -> Path | None:
    """Where ``name``'s source is, if it is not an installed wheel's copy."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent
    return None if "site-packages" in directory.parts else directory


def sources(
    running: Iterable[str], locate: Callable[[str], Path | None] = package_dir
) -> tuple[dict[Path, tuple[str, ...]], list[str]]:
    """(source directory -> the running processes to restart on a change, the packages that
    cannot be watched because they are not this checkout's source)."""
    names = set(running)
    watched: dict[Path, tuple[str, ...]] = {}
    missing: list[str] = []
    wanted = {**OWN, **dict.fromkeys(SHARED, EVERY_SERVICE)}
    for package, restarts in wanted.items():
        targets = tuple(n for n in restarts if n in names)
        if not targets:
            continue
        directory = locate(package)
        if directory is None:
            missing.append(package)
        else:
            watched[directory] = targets
    return watched, missing


def affected(changed: Iterable[Path], watched: Mapping[Path, tuple[str, ...]]) -> list[str]:
    """The processes to restart for these changed files, in `EVERY_SERVICE` order first."""
    hit: set[str] = set()
    for path in changed:
        for directory, names in watched.items():
            if path.is_relative_to(directory):
                hit.update(names)
    order = [*EVERY_SERVICE, *sorted(hit - set(EVERY_SERVICE))]
    return [n for n in order if n in hit]


async def reload_on_change(
    watched: Mapping[Path, tuple[str, ...]],
    reload: Callable[[str], object],
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:
    """Until ``stop``: on each change of a ``.py`` file under ``watched``, ``reload`` each
    process that runs it."""
    if not watched:
        return
    async for changes in awatch(
        *watched, watch_filter=PythonFilter(), debounce=DEBOUNCE_MS, stop_event=stop
    ):
        paths = [Path(p) for _, p in changes]
        names = affected(paths, watched)
        if names:
            shown = ", ".join(sorted({p.name for p in paths}))
            say(f"source changed ({shown}): restarting {', '.join(names)}")
            for name in names:
                reload(name)
