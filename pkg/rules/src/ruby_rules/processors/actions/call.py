"""``call``: call a Home Assistant service on a target, with data."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import (
    ServiceName,
    TemplatedEntityIds,
    Token,
    is_entity_id,
    one_or_many,
)
from ruby_rules.templates import TemplatedObject, compile_value, render_object
from ruby_schemas.primitives import JsonObject

Tokens = Annotated[tuple[Token, ...], BeforeValidator(one_or_many), Field(min_length=1)]


class Target(BaseModel):
    """What a service acts on: entities, areas and/or devices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_id: TemplatedEntityIds | None = None
    """One entity id or a list; an item may be an expression giving one or a list."""
    area_id: Tokens | None = None
    """One area id or a list."""
    device_id: Tokens | None = None
    """One device id or a list."""


class CallActionConfig(ActionConfig):
    """Publishes a command that makes the gateway call ``service`` once."""

    kind: Literal["call"]
    service: ServiceName
    """``domain.service``, such as ``light.turn_on``."""
    target: Target = Target()
    """What the service acts on."""
    data: TemplatedObject = Field(default_factory=dict)
    """The service data, such as ``{brightness_pct: 60}``; values may hold ``{{ expr }}``."""


@REGISTRY.register
class CallAction(Action[CallActionConfig]):
    """Renders its target and data; the engine's runner builds and publishes the command."""

    CONFIG = CallActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Send the call, rendered in the step's context."""
        target, data = self.render_call(step.ctx)
        command_id = step.call(path, *self.domain_service, target, data)
        step.trace(path, "call", f"sent {self.config.service}", command_id=command_id)

    @property
    def domain_service(self) -> tuple[str, str]:
        """The service's domain and name, the two tokens of its command subject."""
        domain, _, service = self.config.service.partition(".")
        return domain, service

    def render_call(self, ctx: Context) -> tuple[dict[str, list[str]], JsonObject]:
        """The target and the data of the command, each expression evaluated in ``ctx``.

        The target has only the keys the rule gives (``entity_id``, ``area_id``, ``device_id``),
        each a list. Raises `ExpressionError` when an expression fails, or when one in
        ``entity_id`` gives anything but an entity id or a non-empty list of them.
        """
        target = self.config.target
        rendered: dict[str, list[str]] = {}
        if target.entity_id is not None:
            rendered["entity_id"] = [
                entity_id for item in target.entity_id for entity_id in _entity_ids(item, ctx)
            ]
        if target.area_id is not None:
            rendered["area_id"] = list(target.area_id)
        if target.device_id is not None:
            rendered["device_id"] = list(target.device_id)
        return rendered, render_object(self.config.data, ctx)


def _entity_ids(item: str, ctx: Context) -> list[str]:
    template = compile_value(item)
    if template.is_static:
        return [item]
    value = template.render(ctx)
    values = value if isinstance(value, list) else [value]
    entity_ids = [entity_id for entity_id in values if is_entity_id(entity_id)]
    if not entity_ids or len(entity_ids) != len(values):
        raise ExpressionError(
            f"target entity_id {item!r} gave {value!r}: expected an entity id such as "
            "'light.hallway', or a list of them"
        )
    return entity_ids
