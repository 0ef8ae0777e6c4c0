"""``publish``: publish an event of our own, ``ruby.evt.engine.rule.<rule_id>.<event_type>``."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Token
from ruby_rules.templates import TemplatedObject, render_object
from ruby_schemas.primitives import JsonObject

RESERVED_EVENT_TYPES: Final = frozenset({"loaded", "rejected", "fired", "failed", "unloaded"})
"""The engine's own rule events share the subject family; a published event cannot take them."""


def _not_reserved(value: str) -> str:
    if value in RESERVED_EVENT_TYPES:
        raise ValueError(
            f"event type {value!r} is reserved for the engine's own rule events "
            f"({', '.join(sorted(RESERVED_EVENT_TYPES))}); choose another name"
        )
    return value


class PublishActionConfig(ActionConfig):
    """Publishes ``event_type`` with ``data`` on EVENTS for other services to react to.

    Rules do not trigger on these events (the engine consumes Home Assistant subjects only).
    """

    kind: Literal["publish"]
    event_type: Annotated[Token, AfterValidator(_not_reserved)]
    """The event's type, one subject token such as ``hallway_lit``."""
    data: TemplatedObject = Field(default_factory=dict)
    """The event's data; values may hold ``{{ expr }}``."""


@REGISTRY.register
class PublishAction(Action[PublishActionConfig]):
    """Renders its data; the engine's runner publishes the event."""

    CONFIG = PublishActionConfig

    def execute(self, step: StepApi, path: Path) -> None:
        """Publish the event, its data rendered in the step's context."""
        event_type = self.config.event_type
        message_id = step.publish(path, event_type, self.render_data(step.ctx))
        step.trace(path, "publish", f"published {event_type}", message_id=message_id)

    def render_data(self, ctx: Context) -> JsonObject:
        """The event's data, each expression evaluated in ``ctx``.

        Raises `ruby_rules.expressions.ExpressionError` if an expression fails.
        """
        return render_object(self.config.data, ctx)
