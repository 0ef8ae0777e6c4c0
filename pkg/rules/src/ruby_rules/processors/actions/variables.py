"""``variables``: set run variables that the following steps' templates read (HA's action)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.templates import compile_value
from ruby_rules.variables import Variables


class VariablesActionConfig(ActionConfig):
    """Sets each name to its value, rendered in order (a value sees the names before it)."""

    kind: Literal["variables"]
    variables: Variables = Field(min_length=1)
    """Names and values; values may hold templates."""


@REGISTRY.register
class VariablesAction(Action[VariablesActionConfig]):
    """Sets the variables where they are defined, else in the run's top scope
    (`ruby_rules.variables`): visible to every step after it."""

    CONFIG = VariablesActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Render and set each variable; a failing template fails the run."""
        for name, value in self.config.variables.items():
            step.set_variable(name, compile_value(value).render(step.ctx))
        step.trace(path, "variables", f"set {', '.join(self.config.variables)}")
