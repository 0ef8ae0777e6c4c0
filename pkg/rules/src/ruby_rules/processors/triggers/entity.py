"""What the triggers on an entity's value share: the index, the ``for`` hold and its re-check."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from pydantic import JsonValue

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_schemas.ha_events import EntityState


def watched_value(state: EntityState | None, attribute: str | None) -> str | None:
    """The state, or an attribute as text, of ``state``; ``None`` if absent."""
    if state is None:
        return None
    if attribute is None:
        return state.state
    value: JsonValue = state.attributes.get(attribute)
    return None if value is None else str(value)


class EntityTriggerConfig(TriggerConfig):
    """The settings every entity trigger has. Declared for the type checker only: each kind
    declares its own fields, so its field order (and the hash of an armed timer) is its own."""

    if TYPE_CHECKING:
        entity_id: tuple[str, ...]
        attribute: str | None
        for_: timedelta | None


E = TypeVar("E", bound=EntityTriggerConfig)


class EntityTrigger(Trigger[E]):
    """A trigger on the state (or one attribute) of some entities, optionally held ``for``.

    Subclasses say which changes fire (`matches_change`) and which values a ``for`` hold must
    keep (`accepts`).
    """

    @property
    def hold(self) -> timedelta | None:
        """The ``for`` duration, if any."""
        return self.config.for_

    def watch(self) -> Watch:
        """Indexed by its entities."""
        return Watch(entities=tuple(self.config.entity_id))

    def accepts(self, value: str | None) -> bool:
        """Whether a held value still satisfies the trigger; subclasses decide."""
        return False

    def still_holds(self, state: EntityState | None, states: States = NO_STATES) -> bool:
        """Whether the watched value of ``state`` is still one the trigger accepts."""
        return self.accepts(self.watched_value(state))

    def unchanged(self, armed: EntityState | None, current: EntityState | None) -> bool:
        """Both present and, for the state itself, the same change (same ``last_changed``)."""
        if armed is None or current is None:
            return False
        return self.config.attribute is not None or current.last_changed == armed.last_changed

    def changed_at(self, state: EntityState) -> datetime:
        """``last_changed`` for the state; ``last_updated`` when an attribute is watched."""
        return state.last_changed if self.config.attribute is None else state.last_updated

    def watched_value(self, state: EntityState | None) -> str | None:
        """The state, or the watched attribute as text."""
        return watched_value(state, self.config.attribute)
