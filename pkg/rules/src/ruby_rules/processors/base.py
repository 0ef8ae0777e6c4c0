"""The processor roles and their config base classes.

A processor is a small class registered by kind in the one registry
(`ruby_rules.processors.registry`). Its config is a frozen pydantic model that refuses unknown
fields; the field ``kind`` (a ``Literal``) names it in a rule file and is the discriminator the
registry builds its unions from.

Configs that hold other processors (``and``, ``choose``, ``wait_for``...) annotate them as
``AnyTrigger``, ``AnyCondition`` or ``AnyAction``. For mypy those are the base classes below; at
run time the names are unbound until the registry freezes and rebuilds every config with the
discriminated union of all registered kinds, so a new kind nests everywhere at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, JsonValue

from ruby_rules.context import NO_STATES, Context
from ruby_rules.context import States as States  # re-exported for the condition kinds
from ruby_rules.processors.protocols import ActionProcessor, Path, StepApi, TriggerProcessor, Watch
from ruby_rules.processors.types import Token
from ruby_schemas.ha_events import EntityState

Role: TypeAlias = Literal["trigger", "condition", "action"]


class ProcessorConfig(BaseModel):
    """A processor's settings as written in a rule: immutable, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        defer_build=True,
        strict=False,
        ser_json_timedelta="float",
    )

    kind: str
    """The processor kind; each subclass narrows it to a ``Literal``."""


class TriggerConfig(ProcessorConfig):
    """A trigger's settings; every trigger may be named for traces and ``trigger_id``."""

    id: Token | None = None
    """An optional name for this trigger, reported when it fires."""


class ConditionConfig(ProcessorConfig):
    """A condition's settings."""


class ActionConfig(ProcessorConfig):
    """An action's settings."""


if TYPE_CHECKING:
    AnyTrigger: TypeAlias = TriggerConfig
    AnyCondition: TypeAlias = ConditionConfig
    AnyAction: TypeAlias = ActionConfig

T = TypeVar("T", bound=TriggerConfig)
C = TypeVar("C", bound=ConditionConfig)
A = TypeVar("A", bound=ActionConfig)


class Trigger(Generic[T]):
    """A trigger kind (`TriggerProcessor`). Subclasses set ``CONFIG`` and override what applies
    to them; every other question gets its neutral answer here (never matches, not timed)."""

    ROLE: ClassVar[Role] = "trigger"
    CONFIG: ClassVar[type[TriggerConfig]]

    def __init__(self, config: T) -> None:
        self.config = config

    @property
    def hold(self) -> timedelta | None:
        """No ``for``."""
        return None

    def watch(self) -> Watch:
        """Watches nothing: never offered a change or an event, never timed."""
        return Watch()

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Never fires on a state change."""
        return False

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Never fires on a bus event."""
        return False

    def still_holds(self, state: EntityState | None, states: States = NO_STATES) -> bool:
        """Holds nothing: an armed ``for`` is disarmed."""
        return False

    def held_under(self, entity_id: str) -> str:
        """One hold per entity."""
        return entity_id

    def unchanged(self, armed: EntityState | None, current: EntityState | None) -> bool:
        """Nothing armed to compare."""
        return False

    def changed_at(self, state: EntityState) -> datetime:
        """When the state itself last changed."""
        return state.last_changed

    def watched_value(self, state: EntityState | None) -> str | None:
        """The state, for traces."""
        return None if state is None else state.state

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """Not timed."""
        return None


class TimedTrigger(Trigger[T]):
    """A trigger on the clock: the engine arms a durable timer at each `next_fire`."""

    def watch(self) -> Watch:
        """Timed."""
        return Watch(timed=True)

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """The first instant strictly after ``after``, in its timezone; subclasses compute it."""
        raise NotImplementedError


class Condition(Generic[C]):
    """A condition kind: ``evaluate`` is pure, given current states and the local time."""

    ROLE: ClassVar[Role] = "condition"
    CONFIG: ClassVar[type[ConditionConfig]]

    def __init__(self, config: C) -> None:
        self.config = config

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether the condition holds for ``states`` at ``now`` (an aware local datetime)."""
        raise NotImplementedError

    def holds(self, ctx: Context) -> bool:
        """Whether the condition holds in ``ctx``; kinds that read the trigger override this."""
        return self.evaluate(ctx.states, ctx.now)


class Action(Generic[A]):
    """An action kind (`ActionProcessor`): subclasses set ``CONFIG`` and implement `execute`."""

    ROLE: ClassVar[Role] = "action"
    CONFIG: ClassVar[type[ActionConfig]]

    def __init__(self, config: A) -> None:
        self.config = config

    def execute(self, step: StepApi, path: Path) -> None:
        """Refuse loudly, never skip silently: a kind registered without execution support."""
        raise ValueError(f"action kind {self.config.kind!r} cannot be executed by this engine")

    def branches(self) -> Sequence[Sequence[ActionProcessor]]:
        """No branches."""
        return ()

    def branch(self, number: int) -> Sequence[ActionProcessor]:
        """Branch ``number`` of `branches`."""
        return self.branches()[number]

    def resume(self, step: StepApi, path: Path, number: int, rest: Path) -> None:
        """Finish the branch the run paused in; nothing else to do."""
        step.run_branch(self.branch(number), path, number, resume_after=rest)

    def pauses(self) -> bool:
        """Whether an action in one of its branches pauses; a pausing kind says True."""
        return any(action.pauses() for branch in self.branches() for action in branch)

    def waits_on(self) -> TriggerProcessor | None:
        """Waits on no trigger."""
        return None

    def stops_on_timeout(self) -> bool:
        """A pause here (a ``delay``) goes on when due."""
        return False
