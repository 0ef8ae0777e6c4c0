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

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict

from ruby_rules.context import Context
from ruby_rules.context import States as States  # re-exported for the condition kinds
from ruby_rules.processors.types import Token

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
    """A trigger kind. Subclasses set ``CONFIG``; their pure matching needs no NATS."""

    ROLE: ClassVar[Role] = "trigger"
    CONFIG: ClassVar[type[TriggerConfig]]

    def __init__(self, config: T) -> None:
        self.config = config


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
    """An action kind. Execution (commands, timers) arrives with the engine's runner."""

    ROLE: ClassVar[Role] = "action"
    CONFIG: ClassVar[type[ActionConfig]]

    def __init__(self, config: A) -> None:
        self.config = config
