"""Structured logs for every Ruby Core process: one JSON object per line (ADR-0004).

Call ``configure_logging`` once at the start of a service's main, get loggers with
``get_logger``, and let the message runner wrap the handling of each message in
``bind_message_context``. Records from the stdlib ``logging`` module (nats-py, asyncio, ...) go
through the same processors and come out in the same shape.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Final, Literal, TextIO, TypeAlias

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ruby_runtime.correlation import bind_message_context, current_correlation_id
from ruby_runtime.redaction import redact_secrets

__all__ = [
    "Logger",
    "RendererName",
    "bind_message_context",
    "configure_logging",
    "current_correlation_id",
    "get_logger",
    "reset_logging",
]

Logger: TypeAlias = structlog.stdlib.BoundLogger
"""The logger type services use: ``log.info("event", key=value)``."""

RendererName: TypeAlias = Literal["auto", "json", "console"]
"""``auto`` is ``console`` when the output stream is a terminal and ``json`` otherwise."""

_KEY_ORDER: Final = ("ts", "level", "service", "logger", "event", "correlation_id", "causation_id")

# Everything that must run at the call site, in the caller's context (contextvars, the active
# exception); shared by structlog loggers and records from the stdlib logging module.
_CALL_SITE: Final[tuple[Processor, ...]] = (
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
)


class _Handler(logging.StreamHandler[TextIO]):
    """The root handler that ``configure_logging`` installs (a type of its own to find it)."""


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    stream: TextIO | None = None,
    renderer: RendererName = "auto",
    processors: Sequence[Processor] = (),
) -> None:
    """Send all logs of this process, structlog and stdlib alike, to ``stream`` as ``renderer``.

    Promises: one line per event (``json``: one JSON object with ``ts`` in ISO-8601 UTC,
    ``level``, ``service``, ``logger``, ``event``, the bound message context, the call's key
    values, and ``exception`` as a structured list when there is one); secrets are redacted from
    every event last, just before rendering. ``stream`` defaults to ``sys.stdout`` as it is at
    the time of the call. ``processors`` run on every event (structlog and stdlib) before
    redaction; they are the hook for fields such as ``trace_id``.

    Call it once, at start-up, before the first log line. Calling it again replaces the previous
    configuration entirely (the tests do this); it is not meant to race with logging threads.
    Handlers that others added to the root logger are left in place.
    """
    level_number = logging.getLevelNamesMapping().get(level.upper())
    if level_number is None:
        raise ValueError(f"unknown log level: {level!r}")
    out = sys.stdout if stream is None else stream
    tty = _is_tty(out)
    if renderer == "auto":
        renderer = "console" if tty else "json"

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_CALL_SITE, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _service_adder(service),
            *processors,
            *(_console_tail(colors=tty) if renderer == "console" else _json_tail()),
        ],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)

    _remove_handler()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level_number)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_CALL_SITE,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a module-level logger used before configure_logging still follows the
        # configuration later, and structlog.testing.capture_logs works on every logger.
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo ``configure_logging``: remove its handler, reset structlog and the root level."""
    _remove_handler()
    logging.getLogger().setLevel(logging.WARNING)
    structlog.reset_defaults()


def get_logger(name: str | None = None) -> Logger:
    """A logger named ``name`` (default: the calling module's ``__name__``).

    Cheap to call and safe to keep in a module global: it follows the current configuration.
    Context bound with ``log.bind(...)`` stays with the returned logger; for per-message
    context use ``bind_message_context``, which reaches every logger in the task.
    """
    if name is None:
        name = str(sys._getframe(1).f_globals.get("__name__", "ruby"))
    return structlog.stdlib.get_logger(name)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _service_adder(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict["service"] = service
        return event_dict

    return add_service


def _console_tail(*, colors: bool) -> list[Processor]:
    # The traceback is formatted to text before redaction so that redaction sees it.
    return [
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.dev.ConsoleRenderer(colors=colors, timestamp_key="ts"),
    ]


def _json_tail() -> list[Processor]:
    return [
        structlog.processors.ExceptionRenderer(
            # Locals are left out: they are where secrets sit unnamed.
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        redact_secrets,
        _order_keys,
        structlog.processors.JSONRenderer(),
    ]


def _order_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Put the keys people scan for first, for readable raw lines."""
    ordered = {key: event_dict.pop(key) for key in _KEY_ORDER if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _remove_handler() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
        handler.close()
