"""Running a rule's actions: from the start, or resumed after a ``delay``/``wait_for``.

A run executes until it ends or reaches a ``delay`` or ``wait_for``, where it pauses: the
caller stores a timer record holding the paused position and resumes it later, possibly in
another process. Positions are paths: indexes into a sequence of actions, and for an action
that runs sequences the number of the one it runs (``choose``: option index, ``default`` after
the last option; ``if``: 0 ``then``, 1 ``else``; ``sequence``: 0; ``parallel``: the branch;
``repeat``: the iteration, from 0), so a branch is not re-decided on resume, and each
iteration of a repeat has positions (and so command ids) of its own. Resuming inside such an
action hands it the rest of the path (`ActionProcessor.resume`): a repeat finishes the
iteration, then goes on with the next ones.

The run's variables are kept by sequence (`ruby_rules.variables`): a paused run's record holds
the scopes along its position, and what a repeat it is in needs to go on (``loops``: its
``for_each`` items or its count, by position).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Literal, NoReturn

from pydantic import JsonValue

from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import ids
from ruby_rules.processors.protocols import ActionProcessor, End, Path, Pause
from ruby_rules.variables import Scope, assign, merged
from ruby_schemas.commands import FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE
from ruby_schemas.primitives import JsonObject
from ruby_schemas.traces import TraceStep

MAX_KEPT: Final = 256 * 1024
"""Characters of JSON a paused run may keep (its variables and its repeats' items): the
record must stay a small KV value (NATS refuses messages over 1 MiB)."""
MAX_ITERATIONS: Final = 10_000
"""Iterations of one ``repeat`` in a run (counted across pauses: the iteration is in the
position): past it, the run fails."""
MAX_STRETCH_ITERATIONS: Final = 1_000
"""Iterations of all repeats in one stretch of a run (between two pauses), which the engine
runs at once, inside its decision lock: past it, the run fails and the engine goes on."""
MAX_STRETCH_MESSAGES: Final = 1_000
"""Calls and published events of one stretch: its ``rule.fired`` event lists them and its
trace is stored, each a message of at most 1 MiB; past it, the run fails (what came before
is sent)."""

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
    variables: tuple[Scope, ...] = ()
    """When paused: the variables of each sequence along the paused position, outermost first."""
    loops: JsonObject = field(default_factory=dict)
    """When paused: what the repeats around the paused position need to go on, by position."""


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
        variables: Sequence[Scope] = (),
        loops: JsonObject | None = None,
    ) -> None:
        """``variables``: for a new run, its first scope (the rule's variables); for a resumed
        one, the scopes its record stored. ``loops``: what its record stored for its repeats."""
        self._rule_id, self._version, self._run_id = rule_id, version, run_id
        self._trigger, self._base, self._now = trigger, ctx, now
        self._not_after, self._backlog = not_after, backlog
        self._stored = [dict(scope) for scope in variables]
        self._scopes: list[Scope] = []
        self._loops: JsonObject = dict(loops or {})
        self._view: Context | None = None
        self._iterations = 0
        self.segment = Segment()

    @property
    def ctx(self) -> Context:
        """The trigger, the current states, the local time and the variables in scope."""
        if self._view is None:
            self._view = replace(self._base, variables=merged(self._scopes))
        return self._view

    @property
    def now(self) -> datetime:
        """The current time (aware UTC)."""
        return self._now

    def run(self, actions: Sequence[ActionProcessor], resume_after: Path | None) -> Segment:
        """Execute from the start (``resume_after`` None) or after a paused position."""
        try:
            self._scopes.append(self._stored[0] if self._stored else {})
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
        self._count_message(path)
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
        self._count_message(path)
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

    def run_branch(
        self,
        actions: Sequence[ActionProcessor],
        path: Path,
        branch: int,
        *,
        variables: Mapping[str, JsonValue] | None = None,
        resume_after: Path | None = None,
    ) -> None:
        """Run ``actions``, branch number ``branch`` of the action at ``path``, in a scope of
        its own (starting with ``variables``): from its start, or after ``resume_after``
        (resuming, in the scope the record stored)."""
        self._enter(resume_after, variables)
        try:
            self._sequence(actions, (*path, branch), resume_after)
        finally:
            self._scopes.pop()
            self._view = None

    def set_variable(self, name: str, value: JsonValue) -> None:
        """Set a variable: where it is defined, else in the run's top scope."""
        assign(self._scopes, name, value)
        self._view = None

    def remember(self, path: Path, value: JsonValue | None) -> None:
        """Keep (None: drop) what the action at ``path`` needs if the run pauses inside it."""
        key = ids.position(path)
        if value is None:
            self._loops.pop(key, None)
        else:
            self._loops[key] = value

    def remembered(self, path: Path) -> JsonValue | None:
        """What the action at ``path`` kept (`remember`), in this stretch or an earlier one."""
        return self._loops.get(ids.position(path))

    def iteration(self, path: Path, number: int) -> None:
        """Count iteration ``number`` (from 0) of the repeat at ``path``; fail the run past
        `MAX_ITERATIONS` for that repeat or `MAX_STRETCH_ITERATIONS` in this stretch."""
        self._iterations += 1
        if number >= MAX_ITERATIONS:
            self._fail(path, f"more than {MAX_ITERATIONS:,} iterations of one repeat")
        if self._iterations > MAX_STRETCH_ITERATIONS:
            self._fail(path, f"more than {MAX_STRETCH_ITERATIONS:,} iterations between two pauses")

    def pause(self, pause: Pause, reason: str) -> NoReturn:
        """End this stretch; the run waits at ``pause``, its variables kept (the run fails
        when they are more than `MAX_KEPT` characters of JSON)."""
        variables = tuple(dict(scope) for scope in self._scopes)
        size = len(json.dumps([variables, self._loops], ensure_ascii=False))
        if size > MAX_KEPT:
            why = f"the run's variables and repeat items take {size:,} characters"
            self._fail(pause.at, f"cannot pause: {why}; a paused run keeps at most {MAX_KEPT:,}")
        self.segment.variables, self.segment.loops = variables, dict(self._loops)
        raise _Stop("waiting", reason, pause)

    def stop(self, end: End, reason: str) -> NoReturn:
        """End the run."""
        raise _Stop(end, reason)

    # --- internals -------------------------------------------------------------------------

    def _fail(self, path: Path, why: str) -> NoReturn:
        reason = f"action.{ids.position(path)}: {why}"
        self.trace(path, "error", reason)
        raise _Stop("failed", reason)

    def _count_message(self, path: Path) -> None:
        if len(self.segment.commands) + len(self.segment.events) >= MAX_STRETCH_MESSAGES:
            why = f"more than {MAX_STRETCH_MESSAGES:,} calls and events between two pauses"
            self._fail(path, why)

    def _enter(
        self, resume_after: Path | None, variables: Mapping[str, JsonValue] | None = None
    ) -> None:
        level = len(self._scopes)
        resuming = resume_after is not None and level < len(self._stored)
        self._scopes.append(self._stored[level] if resuming else dict(variables or {}))
        self._view = None

    def _sequence(
        self, actions: Sequence[ActionProcessor], prefix: Path, resume_after: Path | None
    ) -> None:
        start = 0
        if resume_after:
            index = resume_after[0]
            if len(resume_after) > 1:
                path = (*prefix, index)
                actions[index].resume(self, path, resume_after[1], resume_after[2:])
            start = index + 1
        for index in range(start, len(actions)):
            actions[index].execute(self, (*prefix, index))


def action_at(actions: Sequence[ActionProcessor], path: Path) -> ActionProcessor:
    """The action at ``path`` (see the module's docstring for how positions number branches)."""
    action = actions[path[0]]
    rest = path[1:]
    while rest:
        action = action.branch(rest[0])[rest[1]]
        rest = rest[2:]
    return action
