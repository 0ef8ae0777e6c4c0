"""``delay``: wait a fixed time before the next action (a durable timer in the engine)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, JsonValue

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, Pause, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import parse_duration
from ruby_rules.templates import check_value, compile_value, has_template

_UNITS: Final = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "milliseconds": 0.001}


def _duration_or_template(value: Any) -> Any:
    if isinstance(value, str) and has_template(value):
        check_value(value)
        return value
    if isinstance(value, dict) and not compile_value(value).is_static:
        return value  # HA's {minutes: "{{ ... }}"}: rendered when the step runs
    return parse_duration(value)


DelayDuration = Annotated[
    timedelta | str | dict[str, JsonValue], BeforeValidator(_duration_or_template)
]
"""A duration; or a template giving one, or a mapping of ``days``...``milliseconds`` whose
values are templates, rendered when the step runs."""


class DelayActionConfig(ActionConfig):
    """Waits ``duration`` (``30s``, ``5m``, ``HH:MM:SS``..., or a template giving one)."""

    kind: Literal["delay"]
    duration: DelayDuration
    """How long to wait."""


@REGISTRY.register
class DelayAction(Action[DelayActionConfig]):
    """Pauses the run; the engine keeps the pause as a durable timer."""

    CONFIG = DelayActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Pause until ``duration`` from now; a template giving no duration fails the run."""
        deadline = step.now + self.duration(step.ctx)
        step.trace(path, "delay", f"waiting until {deadline.isoformat()}")
        step.pause(Pause(path, deadline), "delay")

    def duration(self, ctx: Context) -> timedelta:
        """The duration; a template is rendered in ``ctx`` and read as Home Assistant reads a
        time period: ``HH:MM[:SS]``, seconds, or a mapping of ``days``...``milliseconds``."""
        duration = self.config.duration
        if isinstance(duration, timedelta):
            return duration
        value = compile_value(duration).render(ctx)
        try:
            return parse_duration(_ha_period(value))
        except ValueError as exc:
            raise ExpressionError(f"delay {duration!r} gave {value!r}: {exc}") from None

    def pauses(self) -> bool:
        """It pauses the run."""
        return True


def _ha_period(value: JsonValue) -> JsonValue:
    if isinstance(value, dict):
        if not value or not set(value) <= set(_UNITS):
            raise ValueError(f"expected a mapping of {', '.join(_UNITS)}")
        total = 0.0
        for key, found in value.items():
            if isinstance(found, bool) or not isinstance(found, int | float):
                raise ValueError(f"expected a number for {key}")  # noqa: TRY004 - read as the template's failure
            total += _UNITS[key] * found
        return total
    if isinstance(value, str) and value.count(":") == 1:
        return f"{value}:00"  # HA's HH:MM
    return value
