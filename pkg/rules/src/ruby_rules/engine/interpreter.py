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
from typing import Literal, NoReturn

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.processors.protocols import ActionProcessor, End, Path, Pause
from ruby_schemas.commands import FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE
from ruby_schemas.primitives import JsonObject
from ruby_schemas.traces import TraceStep

__all__ = ["CommandOut", "End", "EventOut", "Interpreter", "Path", "Pause", "Segment"]


@dataclass(frozen=True, slots=True)
class CommandOut:
    """A Home Assistant service call the run sends (published to COMMANDS by the caller), or,
    when `event_type` is set, an event it fires on Home Assistant's bus (``domain.service``
    is then `ruby_schemas.commands`' ``homeassistant.fire_event`` and ``data`` the event's)."""

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
    event_type: str | None = None
    """Set for an event to fire (`ruby_schemas.commands.FireEventV1`), not a service call."""


@dataclass(frozen=True, slots=True)
class EventOut:
    """An event the run publishes (``publish``): ``<p>.evt.engine.rule.<rule>.<event_type>``."""

    message_id: str
    rule_id: str
    version: str
    event_type: str
    data: JsonObject
    trigger: TriggerData


@dataclass(slots=True)
class Segment:
    """What one stretch of a run did, and how it ended."""

    commands: list[CommandOut] = field(default_factory=list)
    events: list[EventOut] = field(default_factory=list)
    steps: list[TraceStep] = field(default_factory=list)
    end: End = "finished"
    reason: str = ""
    pause: Pause | None = None


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, end: End, reason: str, pause: Pause | None = None) -> None:
        super().__init__(reason)
        self.end, self.reason, self.pause = end, reason, pause


class Interpreter:
    """Runs the actions of one run, for one stretch: the `StepApi` its actions execute against.

    Pure: no I/O, time given by the caller.
    """

    def __init__(
        self,
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
        self._rule_id, self._version, self._run_id = rule_id, version, run_id
        self._trigger, self._ctx, self._now = trigger, ctx, now
        self._not_after, self._backlog = not_after, backlog
        self.segment = Segment()

    @property
    def ctx(self) -> Context:
        """The trigger, the current states and the local time."""
        return self._ctx

    @property
    def now(self) -> datetime:
        """The current time (aware UTC)."""
        return self._now

    def run(self, actions: Sequence[ActionProcessor], resume_after: Path | None) -> Segment:
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
            self.segment.steps.append(
                TraceStep(at=self._now, path="action", kind="error", result=str(exc))
            )
        return self.segment

    # --- the StepApi -----------------------------------------------------------------------

    def call(
        self, path: Path, domain: str, service: str, target: dict[str, list[str]], data: JsonObject
    ) -> str:
        """Send a command; its id hashes rule id, version, triggering message and ``path``."""
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
        return cid

    def fire_event(self, path: Path, event_type: str, data: JsonObject) -> str:
        """Send a command firing ``event_type`` on Home Assistant's bus; its id is derived
        like a call's."""
        cid = ids.command_id(self._rule_id, self._version, self._trigger.event_id, path)
        self.segment.commands.append(
            CommandOut(cid, FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE, {}, data, self._rule_id,
                       self._version, self._run_id, self._trigger, self._not_after,
                       self._backlog, event_type)
        )  # fmt: skip
        return cid

    def publish(self, path: Path, event_type: str, data: JsonObject) -> str:
        """Publish a rule event; its id is derived like a command's."""
        mid = ids.event_id(self._rule_id, self._version, self._trigger.event_id, path)
        self.segment.events.append(
            EventOut(mid, self._rule_id, self._version, event_type, data, self._trigger)
        )
        return mid

    def trace(
        self,
        path: Path,
        kind: str,
        result: str,
        *,
        command_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Add the step of the action at ``path``."""
        self.segment.steps.append(
            TraceStep(at=self._now, path=f"action.{ids.position(path)}", kind=kind, result=result,
                      command_id=command_id, message_id=message_id)
        )  # fmt: skip

    def run_branch(self, actions: Sequence[ActionProcessor], path: Path, branch: int) -> None:
        """Run ``actions``, branch number ``branch`` of the action at ``path``, from its start."""
        self._sequence(actions, (*path, branch), None)

    def pause(self, pause: Pause, reason: str) -> NoReturn:
        """End this stretch; the run waits at ``pause``."""
        raise _Stop("waiting", reason, pause)

    def stop(self, end: End, reason: str) -> NoReturn:
        """End the run."""
        raise _Stop(end, reason)

    # --- internals -------------------------------------------------------------------------

    def _sequence(
        self, actions: Sequence[ActionProcessor], prefix: Path, resume_after: Path | None
    ) -> None:
        start = 0
        if resume_after:
            index = resume_after[0]
            if len(resume_after) > 1:
                sub = actions[index].branches()[resume_after[1]]
                self._sequence(sub, (*prefix, index, resume_after[1]), resume_after[2:])
            start = index + 1
        for index in range(start, len(actions)):
            actions[index].execute(self, (*prefix, index))


def action_at(actions: Sequence[ActionProcessor], path: Path) -> ActionProcessor:
    """The action at ``path`` (see the module's docstring for how positions number branches)."""
    action = actions[path[0]]
    rest = path[1:]
    while rest:
        action = action.branches()[rest[0]][rest[1]]
        rest = rest[2:]
    return action
