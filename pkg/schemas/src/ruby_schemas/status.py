"""Status records: what each service writes about itself in the status bucket, under its own keys.

Not messages: KV values, with no envelope and no ``type``, each rewritten by its one writer
every few seconds (and on start and stop). The writer builds the model here and writes
``model_dump_json()``; every reader (``rubyctl``, the services' tests, the engine reading its
own records back, readiness checks) validates the same model with `read_record`.

| key | model | written by |
|---|---|---|
| ``engine`` | `EngineRecord` | the engine, every 5 s, on start and stop |
| ``engine.rules`` | `RulesRecord` | the engine, when a rule ran or the rule set changed |
| ``audit_sink`` | `AuditSinkRecord` | the audit sink, after commits, every 5 s, on stop |
| ``audit_sink.head`` | `AuditHeadRecord` | the audit sink, after a commit that added rows |
| ``gateway`` | `GatewayRecord` | the gateway, every 5 s and on stop |

`GatewayReadiness` is the body of the gateway's ``/readyz``.

Compatibility (ADR-0014, status records): readers ignore a field they do not know, so an older
reader reads a newer writer's record; a field added later has a default, so a newer reader reads
a record written before it existed. Anything else (a field renamed, retyped or removed) is
handled in the model, which then reads both shapes (``last_run`` written as ``""`` by the engine
before issue 13 reads as ``None``), or goes under a new key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from ruby_schemas.errors import FieldError
from ruby_schemas.primitives import UtcDatetime
from ruby_schemas.registry import field_errors

M = TypeVar("M", bound=BaseModel)

Count: TypeAlias = Annotated[int, Field(ge=0)]
"""A counter: zero or more."""


def _legacy_moment(value: object) -> object:
    if value == "":
        return None
    if value is None or isinstance(value, str | datetime):
        return value
    raise ValueError("expected an ISO 8601 time or null")


LegacyMoment: TypeAlias = Annotated[
    Annotated[UtcDatetime, Strict(False)] | None, BeforeValidator(_legacy_moment)
]
"""A time that may be absent: ``null``, or ``""`` as writers before issue 13 wrote it."""


class StatusRecordError(ValueError):
    """A status record is not its contract (or not JSON at all).

    ``str(error)`` names the key and every offending field path, never the offending value, so
    it can be shown to an operator or logged as it is.
    """

    def __init__(self, key: str, errors: list[FieldError]) -> None:
        self.key = key
        self.errors = tuple(errors)
        super().__init__(
            f"status key {key!r} is unreadable: "
            + "; ".join(f"{e.path or '<record>'}: {e.message}" for e in self.errors)
        )


def read_record(model: type[M], raw: bytes | str, *, key: str) -> M:
    """Validate ``raw`` (a status bucket value) as ``model``.

    A `StatusRecord` is strict (no type coercion: ``"5"`` is not a count) and ignores fields it
    does not know (see the module's compatibility rule). Raises
    `StatusRecordError`, and nothing else, for invalid JSON or a record that is not the
    contract; ``key`` names the record in the error.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise StatusRecordError(key, field_errors(exc)) from None


class StatusRecord(BaseModel):
    """A status record: immutable and strict (writers pass typed values: a `datetime`, not its
    text); fields it does not declare are ignored (added later)."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        strict=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
    )


class ServiceRecord(StatusRecord):
    """What every service's own record says: whether it is ready, and when it was written."""

    ready: bool
    """The service is running and doing its job; ``false`` while starting and once stopped."""
    updated: UtcDatetime
    """When the record was written: a record not rewritten for long is old news."""


# --- the engine ----------------------------------------------------------------------------


class EngineRecord(ServiceRecord):
    """The engine's record, key ``engine``."""

    rules: Count
    """Rules loaded and running."""
    timers: Count
    """Timers pending (``for``, ``delay``, ``wait``): they survive a restart."""
    refused_files: tuple[str, ...] = ()
    """Rule files refused at their last load, sorted; the rules they held before keep running."""


class RuleRow(StatusRecord):
    """One rule as ``rubyctl rules status`` shows it."""

    file: str
    """The rule file it comes from."""
    where: str
    """Where it is defined: ``file:line:column``."""
    version: str
    """A hash of its normalised definition: it changes when what the rule does changes."""
    mode: str
    """What a trigger does while a run is in progress (``single``, ``restart``, ...)."""
    runs: Count
    """Runs that ended (a paused or queued run counts when it ends)."""
    failed: Count
    """Of those, the runs that failed."""
    last_status: str = ""
    """How the last run ended (``finished``, ``failed``, ``waiting``...); ``""``: never ran."""
    last_reason: str = ""
    """Why, when the last run failed or did nothing."""
    last_run: LegacyMoment = None
    """When the last run was recorded; ``None``: never ran."""


class RulesRecord(StatusRecord):
    """The engine's rules record, key ``engine.rules``: every rule and every refused file."""

    updated: UtcDatetime
    """When the record was written."""
    rules: dict[str, RuleRow]
    """Every loaded rule, by rule id."""
    refused_files: dict[str, tuple[str, ...]]
    """Every refused rule file and its errors (each with its line)."""


# --- the audit sink ------------------------------------------------------------------------


class AuditSinkRecord(ServiceRecord):
    """The audit sink's record, key ``audit_sink``."""

    stored: Count
    """Audit records in the store, as of the last commit."""
    head_seq: Count
    """The sequence number of the chain's last record (0: the store is empty)."""
    head_hash: str
    """That record's hash (``""``: the store is empty)."""
    db: str
    """The path of the store."""


class AuditHeadRecord(StatusRecord):
    """The chain head the sink published, key ``audit_sink.head``: ``rubyctl audit verify``
    compares the store with it, so a store that lost its last rows is caught."""

    seq: Count
    """The sequence number of the last record stored."""
    hash: str
    """Its hash."""
    updated: UtcDatetime
    """When the head was published."""


# --- the gateway ---------------------------------------------------------------------------


class HaEventsRecord(StatusRecord):
    """The Home Assistant bus events the gateway forwards (besides ``state_changed``)."""

    wanted: tuple[str, ...]
    """The event types forwarded (from the engine's ``engine.event_types`` record)."""
    refused: tuple[str, ...]
    """Types that record names and that cannot be forwarded (not a subject token,
    ``state_changed``)."""
    subscribed: tuple[str, ...]
    """The types subscribed to on the current Home Assistant session."""
    forwarded: Count
    """Events JetStream stored."""
    lost: Count
    """Events JetStream did not store."""
    skipped: Count
    """Events unreadable, or of a type no longer wanted when they arrived."""


class HaRunRecord(StatusRecord):
    """The Home Assistant run the gateway knows, key ``gateway.ha_run`` (ADR-0032)."""

    boot: UtcDatetime
    """Which run: the earliest ``last_changed`` among Home Assistant's states when the gateway
    first saw it (Home Assistant's clock)."""
    seen: UtcDatetime
    """When a gateway session last found this run up (the gateway's clock). A later session
    that finds every state of Home Assistant written after this is in a new run."""


class GatewayRecord(StatusRecord):
    """The gateway's record, key ``gateway``. Counters count since the process started."""

    ready: bool = False
    """Connected to Home Assistant with the projection loaded (what ``/readyz`` checks besides
    NATS); ``false`` once stopped. Absent (``false``) in records written before issue 13."""
    updated: UtcDatetime | None = None
    """When the record was written; absent in records written before issue 13."""
    connected: bool
    """A Home Assistant session is up."""
    connected_since: UtcDatetime | None
    """When the current session started; ``None`` before the first."""
    last_event_at: UtcDatetime | None
    """When the last live ``state_changed`` was published; ``None`` before the first."""
    events_published: Count
    """State changes published to EVENTS, live or reconciled (a removal is one)."""
    reconciled_published: Count
    """Changes published by reconciliation after a (re)connect, removals included."""
    reconnects: Count
    """Sessions that ended and were started again."""
    sessions: Count
    """Sessions established."""
    projection_loaded: bool
    """The projection is loaded, so reconciliation can diff against it."""
    auth_failures: Count
    """Times Home Assistant refused the token."""
    skipped_seen: Count
    """Live events skipped because reconciliation had already published them."""
    backlog_overflows: Count
    """Sessions ended because the backlog of unpublished events overflowed."""
    ha_events: HaEventsRecord
    """The other bus events forwarded."""


class ReadinessChecks(StatusRecord):
    """What the gateway's ``/readyz`` checks, each by name."""

    home_assistant: bool
    """A Home Assistant session is up."""
    nats: bool
    """The NATS connection is up."""
    projection: bool
    """The projection is loaded."""


class GatewayReadiness(StatusRecord):
    """The body of the gateway's ``/readyz`` (status 200 when ready, else 503)."""

    ready: bool
    """Every check passes."""
    checks: ReadinessChecks
    """Each check's result."""
