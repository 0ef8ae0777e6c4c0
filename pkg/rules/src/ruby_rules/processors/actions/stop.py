"""``stop``: end the run here, as a normal stop or as an error."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Flag


class StopActionConfig(ActionConfig):
    """Stops the run; the reason goes into its trace."""

    kind: Literal["stop"]
    reason: str = Field(min_length=1)
    """Why the run stopped."""
    error: Flag = False
    """Record the run as failed rather than finished."""


@REGISTRY.register
class StopAction(Action[StopActionConfig]):
    """Ends the run, stopped or failed, with its reason."""

    CONFIG = StopActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """End the run here."""
        step.trace(path, "stop", self.config.reason)
        step.stop("failed" if self.config.error else "stopped", self.config.reason)
