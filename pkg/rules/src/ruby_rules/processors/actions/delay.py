"""``delay``: wait a fixed time before the next action (a durable timer in the engine)."""

from __future__ import annotations

from typing import Literal

from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Duration


class DelayActionConfig(ActionConfig):
    """Waits ``duration`` (``30s``, ``5m``, ``HH:MM:SS``...)."""

    kind: Literal["delay"]
    duration: Duration
    """How long to wait."""


@REGISTRY.register
class DelayAction(Action[DelayActionConfig]):
    """The wait itself is a durable timer, built with the engine's timers."""

    CONFIG = DelayActionConfig
