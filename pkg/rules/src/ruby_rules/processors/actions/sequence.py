"""``sequence`` and ``parallel``: groups of actions.

``parallel`` runs its branches one after the other, within one step of the run: Home
Assistant runs them at once, which for actions that do not wait gives the same result (every
branch's calls are sent at once, each exactly once). A branch that pauses (a ``delay``, a
wait) would need the run to wait in several places at once: it is refused when the rule
loads, naming the branch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, model_validator

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyAction


class SequenceActionConfig(ActionConfig):
    """Runs ``actions`` in order (a group, as HA's ``sequence``)."""

    kind: Literal["sequence"]
    actions: tuple[AnyAction, ...] = Field(min_length=1)
    """What runs."""


class ParallelActionConfig(ActionConfig):
    """Runs each of ``actions`` as a branch of its own (a ``sequence`` groups several)."""

    kind: Literal["parallel"]
    actions: tuple[AnyAction, ...] = Field(min_length=1)
    """The branches, one action each."""

    @model_validator(mode="after")
    def _no_pause(self) -> Self:
        for number, action in enumerate(self.actions):
            if REGISTRY.action(action).pauses():
                raise ValueError(
                    f"branch {number} ({action.kind}) of a parallel action pauses the run (a "
                    "delay or a wait): Ruby Core cannot pause one branch while the others go "
                    "on; move the pause out of the parallel, after it"
                )
        return self


@REGISTRY.register
class SequenceAction(Action[SequenceActionConfig]):
    """Branch 0: its actions."""

    CONFIG = SequenceActionConfig

    def __init__(self, config: SequenceActionConfig) -> None:
        super().__init__(config)
        self._branches = (REGISTRY.actions(config.actions),)

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """Its actions, as branch 0."""
        return self._branches

    def execute(self, step: StepApi, path: Path) -> None:
        """Run the actions."""
        step.trace(path, "sequence", f"{len(self._branches[0])} actions")
        step.run_branch(self._branches[0], path, 0)


@REGISTRY.register
class ParallelAction(Action[ParallelActionConfig]):
    """Branch ``n``: its ``n``-th action alone."""

    CONFIG = ParallelActionConfig

    def __init__(self, config: ParallelActionConfig) -> None:
        super().__init__(config)
        self._branches = tuple((action,) for action in REGISTRY.actions(config.actions))

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """One branch per action."""
        return self._branches

    def execute(self, step: StepApi, path: Path) -> None:
        """Run every branch, in order."""
        step.trace(path, "parallel", f"{len(self._branches)} branches, run in order")
        for number, branch in enumerate(self._branches):
            step.run_branch(branch, path, number)
