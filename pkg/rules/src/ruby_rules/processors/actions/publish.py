"""``publish``: publish an event of our own, ``ruby.evt.engine.rule.<rule_id>.<event_type>``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Token
from ruby_schemas.primitives import JsonObject


class PublishActionConfig(ActionConfig):
    """Publishes ``event_type`` with ``data`` for other rules and services to react to."""

    kind: Literal["publish"]
    event_type: Token
    """The event's type, one subject token such as ``hallway_lit``."""
    data: JsonObject = Field(default_factory=dict)
    """The event's data."""


@REGISTRY.register
class PublishAction(Action[PublishActionConfig]):
    """Publishing arrives with the engine's runner."""

    CONFIG = PublishActionConfig
