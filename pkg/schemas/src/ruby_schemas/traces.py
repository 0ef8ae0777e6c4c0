"""Run traces: what the engine writes about each run of a rule, and what ``rubyctl`` reads.

Not messages: KV values. The engine keeps each rule's recent runs and writes them to its status
bucket under ``engine.trace.<rule id>`` (a `TraceRecord`); ``rubyctl rules trace`` reads them
and ``rubyctl rules test`` prints the ones a simulation produced; a paused run's record (see
`ruby_schemas.timers`) carries its steps so far. The JSON is the one the engine wrote before
these were typed (ISO times with ``+00:00``, optional keys left out), so records already stored
read back. Frozen; readers ignore fields added later, so a newer engine may add one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

Moment: TypeAlias = Annotated[
    AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")
]
"""An aware time, written as `datetime.isoformat` writes it (``2026-11-20T18:00:00+00:00``)."""


class _TraceModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @model_serializer(mode="wrap")
    def _without_absent(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        # Optional keys are written only when they have a value, as the engine always did.
        data = handler(self)
        if isinstance(data, dict):
            for key in self._optional(info.by_alias or False):
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    def _optional(self, by_alias: bool) -> tuple[str, ...]:
        return ()


class TraceTrigger(_TraceModel):
    """What fired the run, as a trace shows it."""

    kind: str
    """The trigger kind (``state``, ``event``, ``time``...)."""
    id: str
    """The trigger's ``id``, else its position in ``triggers``."""
    event_id: str
    """The id of the triggering message (or scheduled instant)."""
    time: Moment
    """When the trigger fired."""
    entity_id: str | None = None
    """For a change of an entity: the entity."""
    from_: str | None = Field(default=None, alias="from")
    """For a change of an entity: its state before (``None``: it was new)."""
    to: str | None = None
    """For a change of an entity: its state after (``None``: it was removed)."""
    event_type: str | None = None
    """For a bus event: its type."""

    def _optional(self, by_alias: bool) -> tuple[str, ...]:
        entity = ("entity_id", "from" if by_alias else "from_", "to")
        return ("event_type", *entity) if self.entity_id is None else ("event_type",)


class TraceStep(_TraceModel):
    """One step of a run: a condition checked, an action done, a pause or a resume."""

    at: Moment
    """When the step ran."""
    path: str
    """``condition.<n>``, ``action.<position>`` (``1.0.2``: through branches), ``resume``."""
    kind: str
    """The condition's or action's kind, ``timer`` for a resume, ``error`` for a failure."""
    result: str
    """What happened, in words."""
    command_id: str | None = None
    """For a ``call``: the command's id."""
    message_id: str | None = None
    """For a ``publish``: the event's message id."""

    def _optional(self, by_alias: bool) -> tuple[str, ...]:
        return ("command_id", "message_id")


class RunTrace(_TraceModel):
    """One run of a rule (or a ``for`` timer armed or disarmed: status ``armed``/``disarmed``).

    ``status`` is ``started`` while it is built, then ``finished``, ``stopped``, ``failed``,
    ``waiting`` (paused), ``queued``, ``ignored`` (mode), ``not_run`` (a condition),
    ``skipped`` (late, superseded) or ``cancelled`` (mode restart). A reader accepts others.
    """

    run_id: str
    """The run's id (empty for a ``for`` note)."""
    rule_id: str
    """The rule."""
    version: str
    """The rule version the run ran with."""
    file: str
    """The rule's file."""
    trigger: TraceTrigger
    """What fired it."""
    updated: Moment
    """When the trace last changed."""
    status: str
    """Where the run is (see above)."""
    reason: str = ""
    """Why it ended, paused or did not run."""
    steps: tuple[TraceStep, ...] = ()
    """Every step, in order (a resumed run's include those before the pause)."""
    command_ids: tuple[str, ...] = ()
    """The commands sent by the stretch this trace reports."""

    def to_json(self) -> dict[str, Any]:
        """The trace as stored (aliases, optional keys only when set)."""
        return self.model_dump(mode="json", by_alias=True)


class TraceRecord(_TraceModel):
    """A rule's recent runs, oldest first: the status key ``engine.trace.<rule id>``."""

    rule_id: str
    """The rule."""
    runs: tuple[RunTrace, ...] = ()
    """At most the engine's limit (20)."""
