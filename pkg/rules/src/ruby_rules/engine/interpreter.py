"""Running a rule's actions: from the start, or resumed after a ``delay``/``wait_for``.

A run executes until it ends or reaches a ``delay`` or ``wait_for``, where it pauses: the
caller stores a timer record holding the paused position and resumes it later, possibly in
another process. Positions are paths: indexes into a sequence of actions, and for ``choose``
and ``if`` the branch taken (``choose``: option index, ``default`` after the last option;
``if``: 0 ``then``, 1 ``else``), so a branch is not re-decided on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from pydantic import JsonValue

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.processors.actions.branch import ChooseAction, IfAction
from ruby_rules.processors.actions.call import CallAction
from ruby_rules.processors.actions.delay import DelayActionConfig
from ruby_rules.processors.actions.publish import PublishAction
from ruby_rules.processors.actions.stop import StopActionConfig
from ruby_rules.processors.actions.wait_for import WaitForActionConfig
from ruby_rules.processors.base import ActionConfig
from ruby_rules.processors.registry import Registry
from ruby_rules.processors.triggers.time import TimeTrigger
from ruby_rules.processors.triggers.time_pattern import TimePatternTrigger
from ruby_schemas.primitives import JsonObject

Path: TypeAlias = tuple[int, ...]
End = Literal["finished", "stopped", "failed", "waiting"]
Step: TypeAlias = dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class CommandOut:
    """A Home Assistant service call the run sends (published to COMMANDS by the caller)."""

    command_id: str
    domain: str
    service: str
    target: dict[str, list[str]]
    data: JsonObject
    rule_id: str
    version: str
    run_id: str
    trigger: TriggerData
    not_after: datetime | None = None
    """Not to be executed after this (the rule's ``backlog.max_lateness`` past its due time)."""
    backlog: Literal["latest", "all"] = "latest"
    """The rule's backlog policy, for the gateway (`CallServiceV1.backlog`)."""


@dataclass(frozen=True, slots=True)
class EventOut:
    """An event the run publishes (``publish``): ``<p>.evt.engine.rule.<rule>.<event_type>``."""

    message_id: str
    rule_id: str
    version: str
    event_type: str
    data: JsonObject
    trigger: TriggerData


@dataclass(frozen=True, slots=True)
class Pause:
    """Where and until when a run waits."""

    at: Path
    deadline: datetime
    wait: bool = False
    wait_until_time: bool = False


@dataclass(slots=True)
class Segment:
    """What one stretch of a run did, and how it ended."""

    commands: list[CommandOut] = field(default_factory=list)
    events: list[EventOut] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    end: End = "finished"
    reason: str = ""
    pause: Pause | None = None


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, end: End, reason: str, pause: Pause | None = None) -> None:
        super().__init__(reason)
        self.end, self.reason, self.pause = end, reason, pause


def branches(config: ActionConfig) -> tuple[tuple[ActionConfig, ...], ...]:
    """The sub-sequences of a branching action, numbered as positions number them."""
    options = getattr(config, "options", None)
    if options is not None:
        return (*(option.actions for option in options), config.default)  # type: ignore[attr-defined]
    if config.kind == "if":
        return (config.then, config.else_)  # type: ignore[attr-defined]
    return ()


class Interpreter:
    """Runs the actions of one run, for one stretch. Pure: no I/O, time given by the caller."""

    def __init__(
        self,
        registry: Registry,
        *,
        rule_id: str,
        version: str,
        run_id: str,
        trigger: TriggerData,
        ctx: Context,
        now: datetime,
        not_after: datetime | None = None,
        backlog: Literal["latest", "all"] = "latest",
    ) -> None:
        self._registry = registry
        self._rule_id, self._version, self._run_id = rule_id, version, run_id
        self._trigger, self._ctx, self._now = trigger, ctx, now
        self._not_after, self._backlog = not_after, backlog
        self.segment = Segment()

    def run(self, actions: Sequence[ActionConfig], resume_after: Path | None) -> Segment:
        """Execute from the start (``resume_after`` None) or after a paused position."""
        try:
            self._sequence(actions, (), resume_after)
        except _Stop as stop:
            self.segment.end, self.segment.reason, self.segment.pause = (
                stop.end,
                stop.reason,
                stop.pause,
            )
        except ValueError as exc:  # an expression that cannot be evaluated, an invalid result
            self.segment.end, self.segment.reason = "failed", str(exc)
            self._step("action", "error", str(exc))
        return self.segment

    def _step(self, path: str, kind: str, result: str, **extra: JsonValue) -> None:
        step: Step = {"at": self._now.isoformat(), "path": path, "kind": kind, "result": result}
        step.update(extra)
        self.segment.steps.append(step)

    def _sequence(
        self, actions: Sequence[ActionConfig], prefix: Path, resume_after: Path | None
    ) -> None:
        start = 0
        if resume_after:
            index = resume_after[0]
            if len(resume_after) > 1:
                sub = branches(actions[index])[resume_after[1]]
                self._sequence(sub, (*prefix, index, resume_after[1]), resume_after[2:])
            start = index + 1
        for index in range(start, len(actions)):
            self._action(actions[index], (*prefix, index))

    def _action(self, config: ActionConfig, path: Path) -> None:
        where = f"action.{ids.position(path)}"
        action: Any = self._registry.action(config)
        if isinstance(action, CallAction):
            target, data = action.render_call(self._ctx)
            domain, service = action.domain_service
            cid = ids.command_id(self._rule_id, self._version, self._trigger.event_id, path)
            self.segment.commands.append(
                CommandOut(
                    cid,
                    domain,
                    service,
                    target,
                    data,
                    self._rule_id,
                    self._version,
                    self._run_id,
                    self._trigger,
                    self._not_after,
                    self._backlog,
                )
            )
            self._step(where, "call", f"sent {config.service}", command_id=cid)  # type: ignore[attr-defined]
        elif isinstance(action, PublishAction):
            mid = ids.event_id(self._rule_id, self._version, self._trigger.event_id, path)
            data = action.render_data(self._ctx)
            event_type: str = action.config.event_type
            self.segment.events.append(
                EventOut(mid, self._rule_id, self._version, event_type, data, self._trigger)
            )
            self._step(where, "publish", f"published {event_type}", message_id=mid)
        elif isinstance(action, ChooseAction | IfAction):
            chosen = action.select(self._ctx)
            numbered = branches(config)
            branch = next(i for i, seq in enumerate(numbered) if seq is chosen)
            self._step(where, config.kind, f"took branch {branch}")
            self._sequence(chosen, (*path, branch), None)
        elif isinstance(config, DelayActionConfig):
            deadline = self._now + config.duration
            self._step(where, "delay", f"waiting until {deadline.isoformat()}")
            raise _Stop("waiting", "delay", Pause(path, deadline))
        elif isinstance(config, WaitForActionConfig):
            deadline = self._now + config.timeout
            until_time = False
            trigger: Any = self._registry.trigger(config.trigger)
            if isinstance(trigger, TimeTrigger | TimePatternTrigger):
                fire = trigger.next_fire(self._ctx.now).astimezone(self._now.tzinfo)
                if fire <= deadline:
                    deadline, until_time = fire, True
            self._step(where, "wait_for", f"waiting, at most until {deadline.isoformat()}")
            raise _Stop("waiting", "wait_for", Pause(path, deadline, True, until_time))
        elif isinstance(config, StopActionConfig):
            self._step(where, "stop", config.reason)
            raise _Stop("failed" if config.error else "stopped", config.reason)
        else:  # a kind registered without execution support: refuse loudly, never skip silently
            raise ValueError(  # noqa: TRY004 - reported as the run's failure, like other errors
                f"action kind {config.kind!r} cannot be executed by this engine"
            )
