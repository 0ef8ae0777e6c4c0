"""The one registry of processor kinds: triggers, conditions and actions, by kind name.

A new kind is one module: a config model with ``kind: Literal["name"]`` and a processor class
decorated with ``@REGISTRY.register``, imported from `ruby_rules.processors.builtin`.
`default_registry()` imports the built-in kinds and freezes the registry: from then on every
config that nests other processors validates them against the union of all registered kinds,
and registering more is refused. Not thread-safe while registering; read-only once frozen.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, Field

from ruby_rules.processors.base import (
    Action,
    ActionConfig,
    Condition,
    ConditionConfig,
    ProcessorConfig,
    Role,
    Trigger,
    TriggerConfig,
)

Processor = Trigger[Any] | Condition[Any] | Action[Any]
P = TypeVar("P", bound=type[Trigger[Any]] | type[Condition[Any]] | type[Action[Any]])
M = TypeVar("M", bound=type[BaseModel])

ROLES: tuple[Role, ...] = ("trigger", "condition", "action")
_UNION_NAMES: dict[Role, str] = {
    "trigger": "AnyTrigger",
    "condition": "AnyCondition",
    "action": "AnyAction",
}


class RegistryError(RuntimeError):
    """A kind was registered twice, after freezing, or without a ``Literal`` kind."""


def kind_of(config: type[ProcessorConfig]) -> str:
    """The kind name a config class declares in its ``kind: Literal[...]`` field."""
    args = typing.get_args(config.model_fields["kind"].annotation)
    if len(args) != 1 or not isinstance(args[0], str):
        raise RegistryError(f"{config.__name__}.kind must be a Literal of one string")
    return args[0]


class Registry:
    """Processor classes by role and kind; builds the discriminated unions of their configs."""

    def __init__(self) -> None:
        self._kinds: dict[Role, dict[str, type[Processor]]] = {role: {} for role in ROLES}
        self._by_config: dict[type[ProcessorConfig], type[Processor]] = {}
        self._models: list[type[BaseModel]] = []
        self._frozen = False

    def register(self, cls: P) -> P:
        """Register a processor class under its config's kind (a class decorator)."""
        if self._frozen:
            raise RegistryError(f"cannot register {cls.__name__}: the registry is frozen")
        config = cls.CONFIG
        kind = kind_of(config)
        if kind in self._kinds[cls.ROLE]:
            raise RegistryError(f"{cls.ROLE} kind {kind!r} is already registered")
        self._kinds[cls.ROLE][kind] = cls
        self._by_config[config] = cls
        self._models.append(config)
        return cls

    def model(self, model: M) -> M:
        """Declare a helper model that nests processors, to be rebuilt on freezing."""
        if self._frozen:
            raise RegistryError(f"cannot add {model.__name__}: the registry is frozen")
        self._models.append(model)
        return model

    def kinds(self, role: Role) -> tuple[str, ...]:
        """The registered kind names of ``role``, sorted."""
        return tuple(sorted(self._kinds[role]))

    def config(self, role: Role, kind: str) -> type[ProcessorConfig]:
        """The config class of ``kind`` in ``role``; `KeyError` if no such kind is registered."""
        return self._kinds[role][kind].CONFIG

    def union(self, role: Role) -> object:
        """The discriminated union (on ``kind``) of every config registered for ``role``."""
        configs = tuple(cls.CONFIG for cls in self._kinds[role].values())
        if not configs:
            raise RegistryError(f"no {role} kinds are registered")
        return Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007

    def namespace(self) -> dict[str, object]:
        """``AnyTrigger``, ``AnyCondition``, ``AnyAction``: for rebuilding models that nest them."""
        return {_UNION_NAMES[role]: self.union(role) for role in ROLES}

    def freeze(self) -> None:
        """Refuse further kinds and resolve every nested processor field. Idempotent."""
        if self._frozen:
            return
        self._frozen = True
        namespace = self.namespace()
        for model in self._models:
            model.model_rebuild(force=True, _types_namespace=namespace)

    def build(self, config: ProcessorConfig) -> Processor:
        """The processor for a validated config."""
        return self._by_config[type(config)](config)

    def trigger(self, config: TriggerConfig) -> Trigger[Any]:
        """The trigger processor for ``config``."""
        processor = self.build(config)
        if not isinstance(processor, Trigger):
            raise TypeError(f"{type(config).__name__} is not a trigger config")
        return processor

    def condition(self, config: ConditionConfig) -> Condition[Any]:
        """The condition processor for ``config``."""
        processor = self.build(config)
        if not isinstance(processor, Condition):
            raise TypeError(f"{type(config).__name__} is not a condition config")
        return processor

    def action(self, config: ActionConfig) -> Action[Any]:
        """The action processor for ``config``."""
        processor = self.build(config)
        if not isinstance(processor, Action):
            raise TypeError(f"{type(config).__name__} is not a action config")
        return processor

    def triggers(self, configs: Iterable[TriggerConfig]) -> tuple[Trigger[Any], ...]:
        """The trigger processors for ``configs``, in order."""
        return tuple(self.trigger(config) for config in configs)

    def conditions(self, configs: Iterable[ConditionConfig]) -> tuple[Condition[Any], ...]:
        """The condition processors for ``configs``, in order."""
        return tuple(self.condition(config) for config in configs)

    def actions(self, configs: Iterable[ActionConfig]) -> tuple[Action[Any], ...]:
        """The action processors for ``configs``, in order."""
        return tuple(self.action(config) for config in configs)


REGISTRY = Registry()
"""The engine's one registry; built-in kinds register into it when imported."""


def default_registry() -> Registry:
    """The registry with every built-in kind registered, frozen."""
    importlib.import_module("ruby_rules.processors.builtin")
    REGISTRY.freeze()
    return REGISTRY
