"""``wait_template``: wait until a template renders true, at most ``timeout``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator

from ruby_rules.context import NO_STATES, States
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Action, ActionConfig, Trigger
from ruby_rules.processors.protocols import Path, Pause, StepApi, Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.template import TemplateTriggerConfig
from ruby_rules.processors.truth import TemplateTruth, watchable
from ruby_rules.processors.types import Duration, Flag
from ruby_schemas.ha_events import EntityState


class WaitTemplateActionConfig(ActionConfig):
    """Goes on at once if ``value_template`` renders true, else pauses the run until it does
    or ``timeout`` passes."""

    kind: Literal["wait_template"]
    value_template: Annotated[str, AfterValidator(watchable("wait_template", trigger=False))]
    """A template such as ``"{{ is_state('media_player.tv', 'off') }}"``."""
    timeout: Duration
    """The longest wait (required: an unbounded wait would hold a run forever)."""
    continue_on_timeout: Flag = True
    """On timeout, go on with the next action (true) or stop the run (false)."""


class RendersTrue(Trigger[TemplateTriggerConfig]):
    """What resumes a run paused in a ``wait_template``: a change of an entity the template
    reads after which it renders true. Not a rule's trigger (not registered)."""

    def __init__(self, truth: TemplateTruth, config: TemplateTriggerConfig) -> None:
        super().__init__(config)
        self.truth = truth

    def watch(self) -> Watch:
        """The entities its template names, or every entity."""
        return self.truth.watch

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether it renders true with the change; a failed render waits on (as in HA)."""
        try:
            return self.truth.holds_in(states, new)
        except ExpressionError:
            return False


@REGISTRY.register
class WaitTemplateAction(Action[WaitTemplateActionConfig]):
    """Pauses the run (a durable record) until a change makes its template true, or the
    timeout passes; a run paused here resumes once, also after an engine restart."""

    CONFIG = WaitTemplateActionConfig

    def __init__(self, config: WaitTemplateActionConfig) -> None:
        super().__init__(config)
        truth = TemplateTruth(config.value_template)
        trigger = TemplateTriggerConfig.model_validate(
            {"kind": "template", "value_template": config.value_template}
        )
        self.truth = truth
        self.resumes = RendersTrue(truth, trigger)

    def execute(self, step: StepApi, path: Path) -> None:
        """Go on if it renders true now (`ValueError` fails the run if it cannot be
        rendered); else pause until it does or the timeout passes."""
        if self.truth.holds(step.ctx):
            step.trace(path, "wait_template", "true already: going on")
            remaining = self.config.timeout.total_seconds()
            step.set_variable("wait", {"trigger": None, "completed": True, "remaining": remaining})
            return
        deadline = step.now + self.config.timeout
        step.trace(path, "wait_template", f"waiting, at most until {deadline.isoformat()}")
        step.pause(Pause(path, deadline, wait=True), "wait_template")

    def waits_on(self) -> RendersTrue:
        """A change after which it renders true resumes the run before the deadline."""
        return self.resumes

    def stops_on_timeout(self) -> bool:
        """Unless ``continue_on_timeout``."""
        return not self.config.continue_on_timeout

    def pauses(self) -> bool:
        """It may pause the run (so ``parallel`` refuses it)."""
        return True
