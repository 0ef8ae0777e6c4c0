"""Correlation ids (and other per-message context) for log lines, held in contextvars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final, TypeAlias

import structlog

__all__ = [
    "RESERVED_KEYS",
    "ContextValue",
    "bind_message_context",
    "current_correlation_id",
]

ContextValue: TypeAlias = str | int | float | bool
"""What may be bound as message context: a JSON scalar."""

RESERVED_KEYS: Final[frozenset[str]] = frozenset(
    {"event", "ts", "level", "service", "logger", "exception", "exc_info", "stack_info"}
)
"""Keys that the logging pipeline itself writes; binding them is refused."""


@contextlib.contextmanager
def bind_message_context(
    correlation_id: str,
    causation_id: str | None = None,
    **extra: ContextValue,
) -> Iterator[None]:
    """Bind a message's correlation id (and more) to every log line emitted inside the block.

    Every log line emitted inside the ``with`` block, through structlog or through the stdlib
    ``logging`` module, carries ``correlation_id``, ``causation_id`` (left out when ``None``,
    even if an enclosing block set one) and each ``extra`` key.

    On exit, however the block ends (return, exception, cancellation), the whole log context is
    restored to what it was on entry: values from an enclosing block come back, and whatever
    code inside the block bound with ``structlog.contextvars.bind_contextvars`` is dropped.

    Concurrency: the values live in contextvars, so they belong to the current thread or asyncio
    task. Tasks created inside the block inherit a copy (their own later binds stay their own);
    concurrent tasks, each in its own block, never see each other's values. Enter and exit the
    block in the same task (a plain ``with`` around the handling of one message).

    Raises ``ValueError`` for an empty ``correlation_id`` or a key in ``RESERVED_KEYS``.
    """
    if not correlation_id:
        raise ValueError("correlation_id must be a non-empty string")
    reserved = RESERVED_KEYS.intersection(extra)
    if reserved:
        raise ValueError(f"cannot bind reserved log keys: {sorted(reserved)}")

    previous = structlog.contextvars.get_contextvars()
    values: dict[str, ContextValue] = {"correlation_id": correlation_id, **extra}
    if causation_id is None:
        structlog.contextvars.unbind_contextvars("causation_id")
    else:
        values["causation_id"] = causation_id
    structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**previous)


def current_correlation_id() -> str | None:
    """The correlation id bound in the current thread or task, or ``None`` outside any block."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else None
