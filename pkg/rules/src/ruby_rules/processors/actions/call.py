"""``call``: call a Home Assistant service on a target, with data."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import (
    TemplatedEntityIds,
    TemplatedServiceName,
    TemplatedTokens,
    TemplateText,
    is_entity_id,
    is_token,
    service_name,
)
from ruby_rules.templates import TemplatedObject, compile_value, render_object
from ruby_schemas.primitives import JsonObject


class Target(BaseModel):
    """What a service acts on: entities, areas and/or devices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_id: TemplatedEntityIds | None = None
    """One entity id or a list; an item may be an expression giving one or a list."""
    area_id: TemplatedTokens | None = None
    """One area id or a list; an item may be a template giving one or a list."""
    device_id: TemplatedTokens | None = None
    """One device id or a list; an item may be a template giving one or a list."""
    template: TemplateText | None = None
    """Instead of the fields: a template giving a mapping of them when the step runs
    (``target: "{{ ... }}"`` is short for ``target: {template: "{{ ... }}"}``)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"template": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _template_alone(self) -> Self:
        if self.template is not None and self.model_fields_set - {"template"}:
            raise ValueError("give either 'template' or entity_id/area_id/device_id, not both")
        return self


class CallActionConfig(ActionConfig):
    """Publishes a command that makes the gateway call ``service`` once."""

    kind: Literal["call"]
    service: TemplatedServiceName
    """``domain.service``, such as ``light.turn_on``, or a template giving one."""
    target: Target = Target()
    """What the service acts on (or a template giving it, see `Target.template`)."""
    data: TemplatedObject = Field(default_factory=dict)
    """The service data, such as ``{brightness_pct: 60}``; values may hold templates."""
    data_template: TemplateText | None = None
    """Instead of ``data``: one template giving the whole data, a mapping, when the step
    runs (HA's ``data: "{{ ... }}"``)."""

    @model_validator(mode="after")
    def _one_data(self) -> Self:
        if self.data and self.data_template is not None:
            raise ValueError("give either 'data' or 'data_template', not both")
        return self


@REGISTRY.register
class CallAction(Action[CallActionConfig]):
    """Renders its target and data; the engine's runner builds and publishes the command."""

    CONFIG = CallActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Send the call, rendered in the step's context (its id hashes the position only,
        never what was rendered)."""
        target, data = self.render_call(step.ctx)
        domain, service = self.render_service(step.ctx)
        command_id = step.call(path, domain, service, target, data)
        step.trace(path, "call", f"sent {domain}.{service}", command_id=command_id)

    @property
    def domain_service(self) -> tuple[str, str]:
        """The service's domain and name as written (a template: as it is written)."""
        domain, _, service = self.config.service.partition(".")
        return domain, service

    def render_service(self, ctx: Context) -> tuple[str, str]:
        """The service's domain and name, the two tokens of its command subject; a template
        is rendered in ``ctx`` and must give ``domain.service`` (else `ExpressionError`)."""
        template = compile_value(self.config.service)
        if template.is_static:
            return self.domain_service
        rendered = template.render(ctx)
        try:
            name = service_name(rendered)
        except ValueError as exc:
            message = f"service {self.config.service!r} gave {rendered!r}: {exc}"
            raise ExpressionError(message) from None
        domain, _, service = name.partition(".")
        return domain, service

    def render_call(self, ctx: Context) -> tuple[dict[str, list[str]], JsonObject]:
        """The target and the data of the command, each expression evaluated in ``ctx``.

        The target has only the keys the rule gives (``entity_id``, ``area_id``, ``device_id``),
        each a list. Raises `ExpressionError` when an expression fails, or when one in
        ``entity_id`` gives anything but an entity id or a non-empty list of them.
        """
        target = self.config.target
        if target.template is not None:
            return _rendered_target(target.template, ctx), self.render_data(ctx)
        rendered: dict[str, list[str]] = {}
        for key, items in (
            ("entity_id", target.entity_id),
            ("area_id", target.area_id),
            ("device_id", target.device_id),
        ):
            if items is not None:
                rendered[key] = [found for item in items for found in _ids(key, item, ctx)]
        return rendered, self.render_data(ctx)

    def render_data(self, ctx: Context) -> JsonObject:
        """The service data, rendered in ``ctx``; `ExpressionError` if a template fails or
        a template for the whole data gives anything but a mapping."""
        template = self.config.data_template
        if template is not None:
            value = compile_value(template).render(ctx)
            if not isinstance(value, dict):
                raise ExpressionError(f"data {template!r} gave {value!r}: expected a mapping")
            return value
        return render_object(self.config.data, ctx)


_TARGET_CHECKS = {"entity_id": is_entity_id, "area_id": is_token, "device_id": is_token}


def _rendered_target(template: str, ctx: Context) -> dict[str, list[str]]:
    # What a template gave is used as it is, never rendered again (a state's text holding
    # "{{" must not become a template).
    value = compile_value(template).render(ctx)
    problem = f"target {template!r} gave {value!r}: expected a mapping of "
    if not isinstance(value, dict) or not value or not set(value) <= set(_TARGET_CHECKS):
        raise ExpressionError(problem + "entity_id, area_id and/or device_id")
    target: dict[str, list[str]] = {}
    for key, found in value.items():
        items = found if isinstance(found, list) else [found]
        if not items or not all(_TARGET_CHECKS[key](item) for item in items):
            raise ExpressionError(problem + f"valid ids in {key}")
        target[key] = [str(item) for item in items]
    return target


_EXPECTED = {
    "entity_id": "an entity id such as 'light.hallway'",
    "area_id": "an area id such as 'kitchen'",
    "device_id": "a device id",
}


def _ids(key: str, item: str, ctx: Context) -> list[str]:
    template = compile_value(item)
    if template.is_static:
        return [item]
    value = template.render(ctx)
    values = value if isinstance(value, list) else [value]
    found = [one for one in values if _TARGET_CHECKS[key](one)]
    if not found or len(found) != len(values):
        raise ExpressionError(
            f"target {key} {item!r} gave {value!r}: expected {_EXPECTED[key]}, or a list of them"
        )
    return [str(one) for one in found]
