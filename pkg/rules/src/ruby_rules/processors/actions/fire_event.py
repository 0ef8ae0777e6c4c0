"""``fire_event``: fire an event on Home Assistant's bus, once, through the gateway.

The engine sends it as a command (`ruby_schemas.commands.FireEventV1`) with a deterministic
id, like a ``call``; the gateway fires it with Home Assistant's ``fire_event`` once per id.
Unlike ``publish`` (a Ruby Core rule event on EVENTS), the event reaches Home Assistant's bus:
its automations, and Ruby Core's own ``event`` triggers when its type is one of theirs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.templates import TemplatedObject, has_template, render_object
from ruby_schemas.commands import HA_EVENT_TYPE_MAX_LENGTH
from ruby_schemas.primitives import HEADER_VALUE_PATTERN, JsonObject

_PRINTABLE = re.compile(HEADER_VALUE_PATTERN)


def _ha_event_type(value: str) -> str:
    shown = repr(value) if len(value) <= 60 else f"{value[:57]!r}... ({len(value)} characters)"
    if not value or len(value) > HA_EVENT_TYPE_MAX_LENGTH:
        raise ValueError(
            f"invalid event type {shown}: 1 to {HA_EVENT_TYPE_MAX_LENGTH} characters "
            "(Home Assistant's limit)"
        )
    if _PRINTABLE.fullmatch(value) is None:
        raise ValueError(f"invalid event type {shown}: no control characters")
    if has_template(value):
        raise ValueError(
            f"invalid event type {shown}: an event type is not a template (Home Assistant "
            "fires it as written)"
        )
    return value


HaEventTypeName = Annotated[str, AfterValidator(_ha_event_type)]
"""An event type as Home Assistant accepts it: 1 to 64 characters, dots and spaces allowed."""


class FireEventActionConfig(ActionConfig):
    """Fires ``event_type`` with ``data`` on Home Assistant's bus, once per run."""

    kind: Literal["fire_event"]
    event_type: HaEventTypeName
    """The event's type, such as ``doorbell_rang`` (Home Assistant's rules: 1 to 64
    characters; it is never a subject token, so dots are allowed)."""
    data: TemplatedObject = Field(default_factory=dict)
    """The event's data; values may hold templates, rendered when the action runs."""


@REGISTRY.register
class FireEventAction(Action[FireEventActionConfig]):
    """Renders its data; the engine's runner sends the command, the gateway fires it."""

    CONFIG = FireEventActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Send the command, its data rendered in the step's context."""
        event_type = self.config.event_type
        command_id = step.fire_event(path, event_type, self.render_data(step.ctx))
        step.trace(path, "fire_event", f"sent {event_type}", command_id=command_id)

    def render_data(self, ctx: Context) -> JsonObject:
        """The event's data, each template rendered in ``ctx``.

        Raises `ruby_rules.expressions.ExpressionError` if one fails.
        """
        return render_object(self.config.data, ctx)
