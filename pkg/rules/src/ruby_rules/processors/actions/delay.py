"""``delay``: wait a fixed time before the next action (a durable timer in the engine)."""

from __future__ import annotations

from typing import Literal

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, Pause, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Duration


class DelayActionConfig(ActionConfig):
    """Waits ``duration`` (``30s``, ``5m``, ``HH:MM:SS``...)."""

    kind: Literal["delay"]
    duration: Duration
    """How long to wait."""


@REGISTRY.register
class DelayAction(Action[DelayActionConfig]):
    """Pauses the run; the engine keeps the pause as a durable timer."""

    CONFIG = DelayActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Pause until ``duration`` from now."""
        deadline = step.now + self.config.duration
        step.trace(path, "delay", f"waiting until {deadline.isoformat()}")
        step.pause(Pause(path, deadline), "delay")
