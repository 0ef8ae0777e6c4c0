"""``wait_for``: wait until a trigger fires, at most ``timeout``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import model_validator

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Duration, Flag

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyTrigger


class WaitForActionConfig(ActionConfig):
    """Pauses the run until ``trigger`` fires or ``timeout`` passes."""

    kind: Literal["wait_for"]
    trigger: AnyTrigger
    """Any trigger kind."""
    timeout: Duration
    """The longest wait (required: an unbounded wait would hold a run forever)."""
    continue_on_timeout: Flag = True
    """On timeout, go on with the next action (true) or stop the run (false)."""

    @model_validator(mode="after")
    def _no_nested_for(self) -> Self:
        if getattr(self.trigger, "for_", None) is not None:
            raise ValueError(
                "a wait_for trigger cannot have 'for': the wait's own 'timeout' bounds it"
            )
        return self


@REGISTRY.register
class WaitForAction(Action[WaitForActionConfig]):
    """The wait is a durable timer plus a temporary trigger, built with the engine's timers."""

    CONFIG = WaitForActionConfig
