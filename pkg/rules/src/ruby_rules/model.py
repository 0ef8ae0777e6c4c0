"""A rule: its definition (`RuleConfig`), compiled (`Program`), and where it is (`Rule`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ruby_rules.processors.protocols import ActionProcessor, ConditionProcessor, TriggerProcessor
from ruby_rules.processors.registry import Registry, default_registry
from ruby_rules.processors.types import Count, Duration, Token
from ruby_rules.variables import Variables

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyAction, AnyCondition, AnyTrigger

Mode = Literal["single", "restart", "queued", "parallel"]
DEFAULT_MAX = 10
"""Runs allowed at once (``parallel``) or waiting (``queued``) when ``max`` is not given."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        defer_build=True,
        ser_json_timedelta="float",
    )


class OnMissed(_Strict):
    """What to do with a timer whose deadline passed while the engine was down."""

    policy: Literal["run", "skip"] = "run"
    """``run`` the rest of the run late, or ``skip`` it."""
    max_lateness: Duration | None = None
    """With ``run``: skip anyway when later than this; no limit when omitted."""


class Backlog(_Strict):
    """What to do with changes and commands that come late (DESIGN promise 11, ADR-0031)."""

    policy: Literal["latest", "all"] = "latest"
    """``latest``: when a newer change of the same entity is already known (the engine catching
    up on a backlog), an older change fires nothing (traced as skipped), and the gateway does
    not run a command older than one it already ran on the same entities. ``all``: every
    change fires and every command runs, for rules that count."""
    max_lateness: Duration | None = None
    """A run is skipped, and its commands are refused by the gateway, when later than this
    after its trigger; without it, commands stay valid for 5 minutes."""


class RuleConfig(_Strict):
    """One rule as written in a rule file, validated."""

    id: Token
    """Unique across all rule files; one subject token."""
    description: str = Field(min_length=1)
    """What the rule is for, in words."""
    mode: Mode = "single"
    """What a new trigger does while a run is in flight: ignored (``single``), replaces it
    (``restart``), waits (``queued``) or runs alongside (``parallel``)."""
    max: Count | None = None
    """For ``queued`` and ``parallel``: how many runs may wait or run at once."""
    variables: Variables | None = None
    """Variables of every run (HA's automation ``variables``), rendered in order when a
    trigger fires, before the conditions; templates in the conditions and actions read them."""
    triggers: tuple[AnyTrigger, ...] = Field(min_length=1)
    """Any of these starts a run."""
    conditions: tuple[AnyCondition, ...] = ()
    """All of these must hold for the actions to run."""
    actions: tuple[AnyAction, ...] = Field(min_length=1)
    """What a run does, in order."""
    on_missed: OnMissed = OnMissed()
    """The policy for timers missed while the engine was down."""
    backlog: Backlog = Backlog()
    """The policy for late changes and commands: only the latest change counts, by default."""

    @field_validator("max")
    @classmethod
    def _max_needs_queue(cls, value: int | None, info: ValidationInfo) -> int | None:
        mode = info.data.get("mode", "single")
        if value is not None and mode not in ("queued", "parallel"):
            raise ValueError(f"'max' applies only to modes 'queued' and 'parallel', not {mode!r}")
        return value

    @property
    def max_runs(self) -> int:
        """Runs allowed at once: 1 for ``single``/``restart``, else ``max`` (default 10)."""
        if self.mode in ("single", "restart"):
            return 1
        return DEFAULT_MAX if self.max is None else self.max


def rule_config_type() -> type[RuleConfig]:
    """`RuleConfig`, resolved against every registered processor kind."""
    registry = default_registry()
    if not RuleConfig.__pydantic_complete__:
        RuleConfig.model_rebuild(_types_namespace=registry.namespace())
        OnMissed.model_rebuild()
        Backlog.model_rebuild()
    return RuleConfig


def rule_version(config: RuleConfig) -> str:
    """A hash of the normalised definition: equal for equivalent texts (``5m`` / ``00:05:00``,
    key order, comments, a field written ``null`` or left out), different as soon as anything
    the rule does changes. Fields left out do not count, so adding an optional field to a kind
    leaves every existing rule's version, and so its command ids, as they were (ADR-0007)."""
    canonical = json.dumps(
        config.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Program:
    """A rule's processors, built once from its definition; the engine runs these."""

    triggers: tuple[TriggerProcessor, ...]
    """One per trigger, in order (a trigger's position is its index here)."""
    conditions: tuple[ConditionProcessor, ...]
    """One per condition, in order."""
    actions: tuple[ActionProcessor, ...]
    """The action tree: branching actions hold their branches' processors."""

    @classmethod
    def compile(cls, config: RuleConfig, registry: Registry | None = None) -> Program:
        """Build every processor of ``config`` (default: from the built-in registry)."""
        kinds = registry or default_registry()
        return cls(
            kinds.triggers(config.triggers),
            kinds.conditions(config.conditions),
            kinds.actions(config.actions),
        )

    def event_types(self) -> frozenset[str]:
        """Every bus event type its triggers, and the waits among its actions, listen to."""
        found = {event for trigger in self.triggers for event in trigger.watch().event_types}
        todo = list(self.actions)
        while todo:
            action = todo.pop()
            wait = action.waits_on()
            if wait is not None:
                found.update(wait.watch().event_types)
            for branch in action.branches():
                todo.extend(branch)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Rule:
    """A valid rule, its version, where it is defined, and its processors (built once)."""

    config: RuleConfig
    version: str
    file: str
    line: int
    column: int
    program: Program = field(init=False, repr=False, compare=False)
    """The compiled rule, built when the `Rule` is."""

    def __post_init__(self) -> None:
        # A frozen dataclass sets its derived field this way, once, at construction.
        object.__setattr__(self, "program", Program.compile(self.config))

    @property
    def id(self) -> str:
        """The rule's id."""
        return self.config.id

    @property
    def where(self) -> str:
        """``file:line:column`` of the rule."""
        return f"{self.file}:{self.line}:{self.column}"
