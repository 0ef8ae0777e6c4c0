"""A template that is true or false, and what it reads: shared by the ``template`` trigger
and the ``wait_template`` action.

Its result is Home Assistant's ``result_as_boolean`` of the typed result (`as_boolean`).
What it reads is told once, when its rule loads (`ruby_rules.jinja.reads`): the entities it
names, which the engine's index offers it, or every entity when that cannot be told. A
template that reads the clock is refused: Home Assistant renders such a template every minute
as well as on state changes, and Ruby Core renders it only on state changes, which would
silently give other results.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from pydantic import JsonValue

from ruby_rules.context import Context, States
from ruby_rules.expressions import ExpressionError
from ruby_rules.jinja.reads import Reads, reads
from ruby_rules.processors.protocols import Watch
from ruby_rules.templates import Template, compile_value
from ruby_schemas.ha_events import EntityState

_TRUE: Final = frozenset({"1", "true", "yes", "on", "enable"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def as_boolean(value: JsonValue) -> bool:
    """Home Assistant's ``result_as_boolean``: a bool as it is, a number other than 0, text
    ``1``/``true``/``yes``/``on``/``enable`` (any case); anything else (``none``) is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


def not_supported(value: str, what: str, *, trigger: bool) -> tuple[str, str] | None:
    """What template ``value``, rendered on state changes as ``what``, uses that Ruby Core
    cannot honour yet, and why: the clock, or (unless ``trigger``) the run's trigger. None
    if nothing, or if it does not compile (its config says so)."""
    try:
        compile_value(value)
    except ExpressionError:
        return None
    found = reads(value)
    if found.clock:
        names = ", ".join(f"{name}()" for name in found.clock)
        why = "Home Assistant also renders it every minute, Ruby Core only on state changes"
        return f"{names} in {what}", why
    if found.trigger and not trigger:
        return f"'trigger' in {what}", "a paused wait renders without the run's trigger"
    return None


def watchable(what: str, *, trigger: bool) -> Callable[[str], str]:
    """A validator of a template ``what`` renders on state changes: it must hold a template,
    read some entity, and use nothing `not_supported` names."""

    def check(value: str) -> str:
        if compile_value(value).is_static:
            raise ExpressionError(
                f"{value!r} holds no template: expected one such as "
                "\"{{ states('sensor.power') | float(0) > 3000 }}\""
            )
        refused = not_supported(value, what, trigger=trigger)
        if refused is not None:
            raise ExpressionError(f"{refused[0]} is not supported yet: {refused[1]}")
        if reads(value).entities == ():
            raise ExpressionError(
                f"{what} reads no entity, so its result never changes: name the entities it "
                "depends on (states('sensor.x'), is_state('light.y', 'on'))"
            )
        return value

    return check


class TemplateTruth:
    """A compiled template rendered to true or false. Immutable."""

    __slots__ = ("reads", "template", "watch")

    def __init__(self, source: str) -> None:
        self.template: Template = compile_value(source)
        self.reads: Reads = reads(source)
        entities = self.reads.entities
        self.watch = Watch(all_entities=True) if entities is None else Watch(entities=entities)
        """The entities it names, or every entity when they cannot be told."""

    def holds(self, ctx: Context) -> bool:
        """Whether it renders true in ``ctx``; `ExpressionError` if rendering fails."""
        return as_boolean(self.template.render(ctx))

    def holds_in(self, states: States, at: EntityState | None = None) -> bool:
        """Whether it renders true for ``states`` outside a run (``trigger`` is none; ``now``
        is the time of ``at``, in UTC, since the clock is never read); `ExpressionError`."""
        moment = _EPOCH if at is None else at.last_updated
        return self.holds(Context(states=states, now=moment.astimezone(UTC)))
