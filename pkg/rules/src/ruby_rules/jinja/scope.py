"""The run a template is rendered for: its `Context` (states, the time, the trigger).

Home Assistant's functions (``states()``, ``now()``...) read the run through here, so one
compiled template serves every run; each render sets its own context (a `ContextVar`, so
renders in several threads or tasks never see each other's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ruby_rules.context import Context

_RUN: ContextVar[Context | None] = ContextVar("ruby_rules_template_run", default=None)
_DERIVED: ContextVar[dict[str, Any] | None] = ContextVar(
    "ruby_rules_template_derived", default=None
)


class NoRun(Exception):  # noqa: N818 - raised only while Jinja tries to fold constants
    """A function that reads the run was called outside a render."""


def run() -> Context:
    """The context of the render in progress; `NoRun` outside a render."""
    ctx = _RUN.get()
    if ctx is None:
        raise NoRun("this function needs a run")
    return ctx


def derived(name: str, build: Any) -> Any:
    """``build(run())``, computed once per render."""
    cache = _DERIVED.get()
    if cache is None:
        return build(run())
    if name not in cache:
        cache[name] = build(run())
    return cache[name]


@contextmanager
def running(ctx: Context) -> Iterator[None]:
    """Make ``ctx`` the run of the block."""
    token, cache = _RUN.set(ctx), _DERIVED.set({})
    try:
        yield
    finally:
        _DERIVED.reset(cache)
        _RUN.reset(token)
