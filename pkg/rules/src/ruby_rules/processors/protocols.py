"""What the engine asks of each processor role: the only interface its core calls.

The core (`ruby_rules.engine`) never asks which kind a processor is. A trigger says what it is
indexed by (`Watch`) and answers the questions the core has about a change, an event or the
clock; an action executes itself against a `StepApi`; a condition says whether it holds. The
base classes in `ruby_rules.processors.base` give every question its neutral answer (no match,
not timed, cannot be executed), so a kind implements only what applies to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol, TypeAlias

from pydantic import JsonValue

from ruby_rules.context import NO_STATES, Context, States
from ruby_schemas.ha_events import EntityState
from ruby_schemas.primitives import JsonObject

if TYPE_CHECKING:
    from ruby_rules.processors.base import ActionConfig, ConditionConfig, TriggerConfig

Path: TypeAlias = tuple[int, ...]
"""An action's position: indexes into sequences, and for branching actions the branch taken."""
End = Literal["finished", "stopped", "failed", "waiting"]
"""How a stretch of a run ended."""


@dataclass(frozen=True, slots=True)
class Watch:
    """What a trigger is indexed by: the entities and event types it watches, or the clock."""

    entities: tuple[str, ...] = ()
    """State changes of these entities are offered to `TriggerProcessor.matches_change`."""
    event_types: tuple[str, ...] = ()
    """Bus events of these types are offered to `TriggerProcessor.matches_event`."""
    timed: bool = False
    """The trigger fires at the instants `TriggerProcessor.next_fire` gives (a durable timer).
    A timed trigger that also names ``entities`` is re-armed when one of them changes (a time
    read from an ``input_datetime``, a sunset at ``zone.home``'s location)."""
    all_entities: bool = False
    """Every state change is offered to `TriggerProcessor.matches_change` (a template whose
    entities cannot be told in advance). Costs a call per change: prefer ``entities``."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Where and until when a run waits."""

    at: Path
    deadline: datetime
    wait: bool = False
    """Paused in a wait on a trigger (`ActionProcessor.waits_on`), which may resume it early."""
    wait_until_time: bool = False
    """The deadline is the waited-for time trigger's instant, not the wait's timeout."""


class TriggerProcessor(Protocol):
    """A compiled trigger. Pure: given states, events or a time; no I/O, no clock."""

    @property
    def config(self) -> TriggerConfig:
        """The validated settings it was built from."""
        ...

    @property
    def hold(self) -> timedelta | None:
        """How long a matched change must hold before the trigger fires (``for``), or None."""
        ...

    def watch(self) -> Watch:
        """What the engine's index files it under; fixed for the processor's life."""
        ...

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether a change of a watched entity from ``old`` to ``new`` fires it. ``states``
        are every entity's states with the change applied (the engine's view). `ValueError`
        when it cannot tell (a template that fails): the engine traces it and fires nothing."""
        ...

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Whether a bus event of ``event_type`` carrying ``data`` fires it."""
        ...

    def still_holds(self, state: EntityState | None, states: States = NO_STATES) -> bool:
        """Whether ``state`` still satisfies what fired it (a ``for`` hold is kept or disarmed),
        ``states`` being every entity's current states."""
        ...

    def held_under(self, entity_id: str) -> str:
        """The name its ``for`` hold is kept under when ``entity_id`` changes: the entity
        itself (one hold per entity), or one name for a trigger whose value no single entity
        holds (a template). A name that is not an entity id has no entity to re-check."""
        ...

    def unchanged(self, armed: EntityState | None, current: EntityState | None) -> bool:
        """Whether ``current`` is still the change a ``for`` timer was armed on (``armed``)."""
        ...

    def changed_at(self, state: EntityState) -> datetime:
        """When the value it watches in ``state`` last changed (a ``for`` counts from there)."""
        ...

    def watched_value(self, state: EntityState | None) -> str | None:
        """The value it watches in ``state``, as text, for traces; None if absent."""
        ...

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """For a timed trigger, its first instant strictly after ``after`` (given the current
        ``states``, for a time read from an entity); else, or when there is none, None."""
        ...


class ConditionProcessor(Protocol):
    """A compiled condition. Pure."""

    @property
    def config(self) -> ConditionConfig:
        """The validated settings it was built from."""
        ...

    def holds(self, ctx: Context) -> bool:
        """Whether it holds in ``ctx``; `ValueError` when an expression cannot be evaluated."""
        ...


class StepApi(Protocol):
    """What an action may do during one stretch of a run (the engine's interpreter)."""

    @property
    def ctx(self) -> Context:
        """The trigger, the current states and the local time."""
        ...

    @property
    def now(self) -> datetime:
        """The current time (aware UTC)."""
        ...

    def call(
        self, path: Path, domain: str, service: str, target: dict[str, list[str]], data: JsonObject
    ) -> str:
        """Send a command calling ``domain.service``; returns its command id."""
        ...

    def fire_event(self, path: Path, event_type: str, data: JsonObject) -> str:
        """Send a command firing ``event_type`` with ``data`` on Home Assistant's bus; returns
        its command id."""
        ...

    def publish(self, path: Path, event_type: str, data: JsonObject) -> str:
        """Publish a rule event of ``event_type``; returns its message id."""
        ...

    def trace(
        self,
        path: Path,
        kind: str,
        result: str,
        *,
        command_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Add a step to the run's trace (`ruby_schemas.traces.TraceStep`)."""
        ...

    def run_branch(
        self,
        actions: Sequence[ActionProcessor],
        path: Path,
        branch: int,
        *,
        variables: Mapping[str, JsonValue] | None = None,
        resume_after: Path | None = None,
    ) -> None:
        """Run ``actions``, branch number ``branch`` of the action at ``path``, to its end, in
        a scope of its own starting with ``variables``; with ``resume_after``, a paused run
        goes on after that position inside it (in the scope its record kept)."""
        ...

    def set_variable(self, name: str, value: JsonValue) -> None:
        """Set a run variable: where a scope defines it, else in the run's top scope."""
        ...

    def remember(self, path: Path, value: JsonValue | None) -> None:
        """Keep, in the run (and its record if it pauses), what the action at ``path`` needs
        to go on after a pause inside it; None forgets it."""
        ...

    def remembered(self, path: Path) -> JsonValue | None:
        """What the action at ``path`` kept, or None."""
        ...

    def iteration(self, path: Path, number: int) -> None:
        """Count iteration ``number`` of the repeat at ``path``; ends the run (``failed``)
        past the engine's bound on iterations."""
        ...

    def pause(self, pause: Pause, reason: str) -> NoReturn:
        """Pause the run (never returns): the engine stores it and resumes it later."""
        ...

    def stop(self, end: End, reason: str) -> NoReturn:
        """End the run (never returns) as ``stopped`` or ``failed``."""
        ...


class ActionProcessor(Protocol):
    """A compiled action: executes one step of a run, or pauses it."""

    @property
    def config(self) -> ActionConfig:
        """The validated settings it was built from."""
        ...

    def execute(self, step: StepApi, path: Path) -> None:
        """Do this step at ``path``; `ValueError` fails the run with its message."""
        ...

    def branches(self) -> Sequence[Sequence[ActionProcessor]]:
        """The distinct sequences it may run (each once, for walking the tree); () if none."""
        ...

    def branch(self, number: int) -> Sequence[ActionProcessor]:
        """The sequence a position's branch ``number`` names (a repeat: any iteration);
        `IndexError` if none."""
        ...

    def resume(self, step: StepApi, path: Path, number: int, rest: Path) -> None:
        """Go on with a run paused inside branch ``number`` at ``rest``: finish that branch,
        then whatever the action still has to do (a repeat: the next iterations)."""
        ...

    def pauses(self) -> bool:
        """Whether a run may pause in it or in an action it holds (a ``delay``...)."""
        ...

    def waits_on(self) -> TriggerProcessor | None:
        """The trigger that resumes a run paused here before its deadline, if any."""
        ...

    def stops_on_timeout(self) -> bool:
        """Whether a run paused here ends (``stopped``) when its deadline passes."""
        ...
