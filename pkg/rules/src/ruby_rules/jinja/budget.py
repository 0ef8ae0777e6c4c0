"""What one render may spend: steps, characters built, call depth and wall-clock time.

Every place where a template can repeat work calls in here: each loop iteration, each call
(of a function, a filter, a macro or a method), each piece of output and each value an
operator, filter or function builds. A render that goes past any limit is stopped at that
checkpoint by `LimitExceeded`, which the render turns into the run's failure. Between two
checkpoints a template does a bounded amount of work, because every operation that could
grow a value checks its size *before* building it (`ruby_rules.jinja.guards`).

The budget of the render in progress lives in a `ContextVar`, so renders in several threads
or tasks never share one. Outside a render (while compiling, when Jinja tries to fold
constants) a fresh budget applies to each single operation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

MAX_STEPS: Final = 100_000
"""Loop iterations, calls and output pieces in one render."""
MAX_CHARS: Final = 2_000_000
"""Characters (or items) of all texts and lists one render builds: its memory budget."""
MAX_VALUE: Final = 65_536
"""Characters of one text, or items of one list or mapping, a template builds or outputs."""
MAX_DEPTH: Final = 50
"""Calls nested in calls (a macro calling itself, filters inside filters)."""
MAX_SECONDS: Final = 0.5
"""Wall-clock time of one render; a backstop, the step budget stops real templates first."""
MAX_INT: Final = 10**100
"""Whole numbers stay within this magnitude (and fractional ones finite)."""

_CHECK_CLOCK_EVERY: Final = 64


class LimitExceeded(Exception):  # noqa: N818 - it is the reason a render stops, not a bug
    """A render went past one of its limits; the message says which."""


class Budget:
    """The counters of one render. Not shared: each render builds its own."""

    __slots__ = ("chars", "deadline", "depth", "steps")

    def __init__(self, seconds: float = MAX_SECONDS) -> None:
        self.steps = 0
        self.chars = 0
        self.depth = 0
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left before the deadline; `LimitExceeded` if none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise LimitExceeded(f"the template ran longer than {MAX_SECONDS} s")
        return left

    def step(self, count: int = 1) -> None:
        """Count ``count`` steps; `LimitExceeded` past `MAX_STEPS` or the deadline."""
        before = self.steps
        self.steps += count
        if self.steps > MAX_STEPS:
            raise LimitExceeded(
                f"the template took more than {MAX_STEPS:,} steps (loop iterations and calls)"
            )
        if before // _CHECK_CLOCK_EVERY != self.steps // _CHECK_CLOCK_EVERY and (
            time.monotonic() > self.deadline
        ):
            raise LimitExceeded(f"the template ran longer than {MAX_SECONDS} s")

    def build(self, size: int) -> None:
        """Count a value of ``size`` characters or items about to be built."""
        if size > MAX_VALUE:
            raise LimitExceeded(
                f"the template would build a value of {size:,} characters or items; "
                f"at most {MAX_VALUE:,}"
            )
        self.chars += size
        if self.chars > MAX_CHARS:
            raise LimitExceeded(
                f"the template built more than {MAX_CHARS:,} characters or items in all"
            )
        self.step()


_CURRENT: ContextVar[Budget | None] = ContextVar("ruby_rules_template_budget", default=None)


def current() -> Budget:
    """The budget of the render in progress, or a fresh one outside any render."""
    return _CURRENT.get() or Budget()


@contextmanager
def rendering(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the current one for the block."""
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


@contextmanager
def nested() -> Iterator[None]:
    """One call deeper; `LimitExceeded` past `MAX_DEPTH`."""
    budget = current()
    budget.step()
    if budget.depth >= MAX_DEPTH:
        raise LimitExceeded(f"calls nested more than {MAX_DEPTH} deep")
    budget.depth += 1
    try:
        yield
    finally:
        budget.depth -= 1
