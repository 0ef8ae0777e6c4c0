"""The engine's durable timer records: one variant per kind, as stored in its timers bucket.

Not messages: KV values, written and read only by the engine (ADR-0007), one key each:

- `ForTimer`, ``for.<rule>.<trigger>.<entity>``: a ``for`` trigger waiting for its entity to
  hold a value;
- `AtTimer`, ``at.<rule>.<trigger>``: the next instant of a timed trigger;
- `WaitingRun`, ``run.<rule>.<run id>``: a run paused in ``delay``/``wait_for``;
- `QueuedRun`, the same key: a run of a ``queued`` rule waiting for the one in flight.

`TimerRecord` is their union, discriminated by ``kind`` (then ``status`` for runs). A run
carries its rule's whole definition (``rule``, a JSON object: this package knows no rules; the
rule engine validates and compiles it), so it finishes with the version it started with.

Records written before the variants existed held every field of every kind, the unused ones
empty (``null``, ``false``, ``0``, ``""``, ``[]``, status ``waiting``); those empty leftovers
are dropped on reading, anything else unknown is refused. Times are written as
`datetime.isoformat` writes them, as they always were.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from ruby_schemas.ha_events import EntityState
from ruby_schemas.primitives import JsonObject
from ruby_schemas.traces import Moment, TraceStep

_LEGACY_EMPTY: Final[dict[str, tuple[object, ...]]] = {
    "deadline": (None,),
    "trigger_index": (0,),
    "trigger_hash": ("",),
    "entity_id": (None,),
    "run_id": (None,),
    "status": ("waiting",),
    "resume_after": (None,),
    "wait": (False,),
    "wait_until_time": (False,),
    "queued_seq": (0,),
    "steps": ([],),
    "rule": (None,),
}
"""The fields the single record of old had for every kind, with the values it left in them
when they did not apply."""


_ADDED_LATER: Final = ("variables", "loops")
"""Optional fields of run records added after the first release of the variants."""


class TimerRecordError(ValueError):
    """A stored timer record cannot be read."""


class FiredTrigger(BaseModel):
    """Why a run started (or what armed a timer), as a record stores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    """The trigger kind."""
    id: str
    """The trigger's ``id``, else its position."""
    event_id: str
    """The id of the message (or scheduled instant) that fired it: the ids derive from it."""
    time: Moment
    """When it fired."""
    entity_id: str | None = None
    """For a change of an entity: the entity."""
    from_state: EntityState | None = None
    """For a change of an entity: the state before."""
    to_state: EntityState | None = None
    """For a change of an entity: the state after."""
    event_type: str | None = None
    """For a bus event: its type."""
    event_data: JsonObject = Field(default_factory=dict)
    """For a bus event: its data."""
    correlation_id: str | None = None
    """The triggering message's correlation id."""


class _Timer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    """The rule."""
    version: str
    """The rule version that armed it (``for``/``at``) or that the run runs with."""
    trigger: FiredTrigger
    """What fired (or armed) it."""
    file: str = ""
    """The rule's file."""

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_empties(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if key in cls.model_fields or value not in _LEGACY_EMPTY.get(key, (object(),))
        }


class ForTimer(_Timer):
    """A ``for`` trigger waiting for ``entity_id`` to hold its value until ``deadline``."""

    kind: Literal["for"]
    deadline: Moment
    """When the rule runs, if the value held."""
    trigger_index: int = Field(ge=0)
    """The trigger's position in the rule."""
    trigger_hash: str
    """A hash of the trigger's config: a changed trigger drops the timer."""
    entity_id: str
    """The entity that must hold its value."""


class AtTimer(_Timer):
    """The next instant of a timed trigger."""

    kind: Literal["at"]
    deadline: Moment
    """The instant."""
    trigger_index: int = Field(ge=0)
    """The trigger's position in the rule."""
    trigger_hash: str
    """A hash of the trigger's config: a changed trigger drops the timer."""


class _Run(_Timer):
    kind: Literal["run"]
    run_id: str
    """The run's id."""
    rule: JsonObject
    """The definition the run runs with (the rule engine's ``RuleConfig`` as JSON)."""
    steps: tuple[TraceStep, ...] = ()
    """The trace so far, so a resumed run reports the whole run."""
    variables: tuple[JsonObject, ...] | None = None
    """The run's variables (issue 13): for a paused run, one scope per sequence along
    ``resume_after``, outermost first; for a queued one, the rule's variables as rendered when
    it was triggered. None (records of before, or nothing set): no variables."""

    @model_serializer(mode="wrap")
    def _leave_out_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Fields added later are written only when set: a record without them is written
        # exactly as before they existed (and as an engine of before reads it).
        data = handler(self)
        if isinstance(data, dict):
            for name in _ADDED_LATER:
                if name in data and data[name] is None:
                    del data[name]
        return data


class WaitingRun(_Run):
    """A run paused at ``resume_after`` until ``deadline`` (or until its wait's trigger)."""

    status: Literal["waiting"]
    deadline: Moment
    """When it goes on (a ``delay``'s end, a ``wait_for``'s timeout or time trigger)."""
    resume_after: tuple[int, ...] = Field(min_length=1)
    """The position of the action it is paused in."""
    wait: bool = False
    """Paused in a ``wait_for``: its trigger resumes it before the deadline."""
    wait_until_time: bool = False
    """The deadline is the waited-for time trigger's instant, not the timeout."""
    loops: JsonObject | None = None
    """What the ``repeat`` actions around ``resume_after`` need to go on (their ``for_each``
    items or count), keyed by their position (``"1.0.2"``); None when not in one."""


class QueuedRun(_Run):
    """A run that has not started: it waits for the rule's run in flight to end."""

    status: Literal["queued"]
    queued_seq: int = Field(ge=0)
    """Its place in the queue."""


RunRecord: TypeAlias = Annotated[WaitingRun | QueuedRun, Field(discriminator="status")]
"""A run's record, waiting or queued."""
TimerRecord: TypeAlias = Annotated[ForTimer | AtTimer | RunRecord, Field(discriminator="kind")]
"""Any timer record."""

_ADAPTER: TypeAdapter[ForTimer | AtTimer | WaitingRun | QueuedRun] = TypeAdapter(TimerRecord)


def read_timer(raw: bytes) -> ForTimer | AtTimer | WaitingRun | QueuedRun:
    """A stored record, in today's form or the one of old; `TimerRecordError` if unreadable."""
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'record'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise TimerRecordError(f"unreadable timer record: {problems}") from None


def timer_json(record: ForTimer | AtTimer | WaitingRun | QueuedRun) -> bytes:
    """The record as stored."""
    return _ADAPTER.dump_json(record)
