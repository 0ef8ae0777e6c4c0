"""``wait_for``: wait until a trigger fires, at most ``timeout``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import model_validator

from ruby_rules.processors.base import Action, ActionConfig, Trigger
from ruby_rules.processors.protocols import Path, Pause, StepApi
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
    """Pauses the run until its trigger fires (the engine watches it) or the timeout passes.

    On a timed trigger whose next instant comes before the timeout, that instant is the
    deadline (``wait_until_time``) and reaching it resumes the run.
    """

    CONFIG = WaitForActionConfig

    def __init__(self, config: WaitForActionConfig) -> None:
        super().__init__(config)
        self.trigger: Trigger[Any] = REGISTRY.trigger(config.trigger)

    def execute(self, step: StepApi, path: Path) -> None:
        """Pause until the trigger's next instant or the timeout, whichever comes first."""
        deadline = step.now + self.config.timeout
        until_time = False
        fire = self.trigger.next_fire(step.ctx.now, step.ctx.states)
        if fire is not None and fire.astimezone(step.now.tzinfo) <= deadline:
            deadline, until_time = fire.astimezone(step.now.tzinfo), True
        step.trace(path, "wait_for", f"waiting, at most until {deadline.isoformat()}")
        step.pause(Pause(path, deadline, True, until_time), "wait_for")

    def waits_on(self) -> Trigger[Any]:
        """Its trigger: a match resumes the run before the deadline."""
        return self.trigger

    def stops_on_timeout(self) -> bool:
        """Unless ``continue_on_timeout``."""
        return not self.config.continue_on_timeout

    def pauses(self) -> bool:
        """It pauses the run."""
        return True
