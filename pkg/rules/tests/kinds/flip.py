"""A trigger kind that exists only in a test: ``flip`` fires when an entity goes on->off or
off->on. It is the whole of a new kind, written the way `rules/README.md` says: one module,
a config and a processor, and no change to the engine."""

from __future__ import annotations

from typing import Literal

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityIds
from ruby_schemas.ha_events import EntityState

BUILT: list[str] = []
"""The entity ids of every ``flip`` processor built, in order: how a test counts builds."""


class FlipTriggerConfig(TriggerConfig):
    """Fires when one of ``entity_id`` flips between ``on`` and ``off``."""

    kind: Literal["flip"]
    entity_id: EntityIds
    """The entities watched."""


@REGISTRY.register
class FlipTrigger(Trigger[FlipTriggerConfig]):
    """Indexed by its entities; matches a change between ``on`` and ``off``."""

    CONFIG = FlipTriggerConfig

    def __init__(self, config: FlipTriggerConfig) -> None:
        super().__init__(config)
        BUILT.append(",".join(config.entity_id))

    def watch(self) -> Watch:
        """Its entities."""
        return Watch(entities=tuple(self.config.entity_id))

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """``on`` to ``off`` or ``off`` to ``on``."""
        if old is None or new is None:
            return False
        return {old.state, new.state} == {"on", "off"}
