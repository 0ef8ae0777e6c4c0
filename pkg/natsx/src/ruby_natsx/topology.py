"""Streams, durable consumers and KV buckets, declared as data.

``topology(subjects)`` returns everything one installation needs; ``apply.apply_topology``
makes the server match it. Names are namespaced by the subject prefix, so two installations
(or two tests) on one server never share a stream, consumer or bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

from nats.js import api

from ruby_natsx import tuning
from ruby_natsx.subjects import Subjects

EVENTS: Final = "EVENTS"
COMMANDS: Final = "COMMANDS"
AUDIT: Final = "AUDIT"
DLQ: Final = "DLQ"

ENGINE: Final = "engine"
GATEWAY: Final = "gateway"
AUDIT_SINK: Final = "audit_sink"

PROJECTION: Final = "projection"
IDEMPOTENCY: Final = "idempotency"
TIMERS: Final = "timers"
STATUS: Final = "status"
API_TOKENS: Final = "api_tokens"

RULES_KEY: Final = f"{ENGINE}.rules"
"""The status-bucket key of the engine's rules record (``ruby_schemas.status.RulesRecord``)."""
TRACES_KEY: Final = f"{ENGINE}.trace"
"""Below it, ``<rule id>``: a rule's recent runs (``ruby_schemas.traces.TraceRecord``)."""
AUDIT_HEAD_KEY: Final = f"{AUDIT_SINK}.head"
"""The status-bucket key of the audit store's head the sink published last
(``ruby_schemas.status.AuditHeadRecord``): what ``verify`` compares the store with."""
EVENT_TYPES_KEY: Final = f"{ENGINE}.event_types"
"""The status-bucket key under which the engine keeps the Home Assistant event types its rules
listen to (``engine.ha_event_types.v1``); the gateway follows it (ADR-0030)."""

_T = TypeVar("_T")


class Retention(StrEnum):
    LIMITS = "limits"
    WORK_QUEUE = "workqueue"


class Discard(StrEnum):
    OLD = "old"
    NEW = "new"


@dataclass(frozen=True)
class StreamSpec:
    """One stream. ``logical`` is its role (EVENTS...), ``name`` the server-side name."""

    logical: str
    name: str
    subjects: tuple[str, ...]
    description: str
    retention: Retention = Retention.LIMITS
    max_age: float = 0.0
    max_bytes: int = tuning.STREAM_MAX_BYTES
    max_msg_size: int = tuning.MAX_MSG_SIZE
    duplicate_window: float = 120.0
    deny_delete: bool = False
    deny_purge: bool = False
    discard: Discard = Discard.OLD
    max_msgs_per_subject: int = -1
    allow_rollup_hdrs: bool = False
    allow_direct: bool = False
    locked: bool = False
    """Nobody in day-to-day operation may change it: the operator may create it, never update
    it; ``apply_topology`` refuses to, naming the break-glass procedure (ADR-0005)."""

    def to_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=api.RetentionPolicy(self.retention.value),
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            max_msgs=-1,
            max_consumers=-1,
            max_msgs_per_subject=self.max_msgs_per_subject,
            duplicate_window=self.duplicate_window,
            deny_delete=self.deny_delete,
            deny_purge=self.deny_purge,
            discard=api.DiscardPolicy(self.discard.value),
            allow_rollup_hdrs=self.allow_rollup_hdrs,
            allow_direct=self.allow_direct,
            storage=api.StorageType.FILE,
            num_replicas=1,
        )

    def declared(self) -> dict[str, object]:
        """The fields this declaration owns, in the server's terms, for comparison."""
        return {
            "description": self.description,
            "subjects": tuple(self.subjects),
            "retention": self.retention.value,
            "max_age": self.max_age,
            "max_bytes": self.max_bytes,
            "max_msg_size": self.max_msg_size,
            "max_msgs_per_subject": self.max_msgs_per_subject,
            "duplicate_window": self.duplicate_window,
            "deny_delete": self.deny_delete,
            "deny_purge": self.deny_purge,
            "discard": self.discard.value,
            "allow_rollup_hdrs": self.allow_rollup_hdrs,
            "allow_direct": self.allow_direct,
            "storage": api.StorageType.FILE.value,
        }


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer: explicit acks, bounded in flight, MaxDeliver, then the DLQ."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    description: str
    ack_wait: float = tuning.ACK_WAIT
    max_deliver: int = tuning.MAX_DELIVER
    max_ack_pending: int = tuning.MAX_ACK_PENDING
    max_waiting: int = tuning.MAX_WAITING
    self_created: bool = False
    """Created by the service that consumes it, through the filtered create subject
    (``$JS.API.CONSUMER.CREATE.<S>.<durable>.<filter>``), never by the operator: the audit
    sink's consumer, which the operator may not touch (ADR-0005)."""

    def to_config(self) -> api.ConsumerConfig:
        one = len(self.filter_subjects) == 1  # one filter: nats-py puts it in the API subject
        return api.ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=self.description,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=self.filter_subjects[0] if one else None,
            filter_subjects=None if one else list(self.filter_subjects),
            max_ack_pending=self.max_ack_pending,
            max_waiting=self.max_waiting,
            replay_policy=api.ReplayPolicy.INSTANT,
        )

    def declared(self) -> dict[str, object]:
        return {
            "description": self.description,
            "deliver_policy": api.DeliverPolicy.ALL.value,
            "ack_policy": api.AckPolicy.EXPLICIT.value,
            "ack_wait": self.ack_wait,
            "max_deliver": self.max_deliver,
            "filter_subjects": tuple(self.filter_subjects),
            "max_ack_pending": self.max_ack_pending,
            "max_waiting": self.max_waiting,
        }


@dataclass(frozen=True)
class BucketSpec:
    """One KV bucket; JetStream keeps it as the stream ``KV_<bucket>``."""

    logical: str
    bucket: str
    description: str
    history: int = 1
    ttl: float = 0.0

    def stream(self) -> StreamSpec:
        """The stream that backs this bucket, shaped as nats-py's KV client expects it."""
        return StreamSpec(
            logical=self.logical,
            name=f"KV_{self.bucket}",
            subjects=(f"$KV.{self.bucket}.>",),
            description=self.description,
            max_age=self.ttl,
            max_bytes=-1,
            max_msg_size=tuning.MAX_MSG_SIZE,
            duplicate_window=min(120.0, self.ttl) if self.ttl else 120.0,
            deny_delete=True,
            discard=Discard.NEW,
            max_msgs_per_subject=self.history,
            allow_rollup_hdrs=True,
            allow_direct=True,
        )


@dataclass(frozen=True)
class Topology:
    """Everything one installation declares, in the order it must be applied."""

    subjects: Subjects
    streams: tuple[StreamSpec, ...]
    buckets: tuple[BucketSpec, ...]
    consumers: tuple[ConsumerSpec, ...]

    def stream(self, logical: str) -> StreamSpec:
        return _find(self.streams, logical, "stream", lambda s: s.logical)

    def bucket(self, logical: str) -> BucketSpec:
        return _find(self.buckets, logical, "bucket", lambda b: b.logical)

    def consumer(self, durable: str) -> ConsumerSpec:
        return _find(self.consumers, durable, "consumer", lambda c: c.durable)


def _find(items: tuple[_T, ...], key: str, what: str, get: Callable[[_T], str]) -> _T:
    for item in items:
        if get(item) == key:
            return item
    raise KeyError(f"no {what} named {key!r} is declared")


def stream_name(subjects: Subjects, logical: str) -> str:
    """The server-side name of a stream: ``RUBY_EVENTS`` for prefix ``ruby``."""
    return f"{subjects.prefix.upper()}_{logical}"


def topology(subjects: Subjects) -> Topology:
    """Declare every stream, bucket and consumer of the installation named by ``subjects``."""
    s = subjects
    streams = (
        StreamSpec(
            logical=EVENTS,
            name=stream_name(s, EVENTS),
            subjects=(s.events_all,),
            description="HA state changes and events, command outcomes, rule lifecycle",
            max_age=tuning.EVENTS_MAX_AGE,
            duplicate_window=tuning.EVENTS_DUPLICATE_WINDOW,
            allow_direct=True,  # the API's event stream reads it by direct gets (ADR-0020)
        ),
        StreamSpec(
            logical=COMMANDS,
            name=stream_name(s, COMMANDS),
            subjects=(s.commands_all,),
            description="Home Assistant service calls to execute, once each (work queue)",
            retention=Retention.WORK_QUEUE,
            max_age=tuning.COMMANDS_MAX_AGE,
            duplicate_window=tuning.COMMANDS_DUPLICATE_WINDOW,
        ),
        StreamSpec(
            logical=AUDIT,
            name=stream_name(s, AUDIT),
            subjects=(s.audit_all,),
            description="Critical actions; append-only: deletes and purges are denied",
            max_age=tuning.AUDIT_MAX_AGE,
            duplicate_window=tuning.AUDIT_DUPLICATE_WINDOW,
            deny_delete=True,
            deny_purge=True,
            discard=Discard.NEW,
            locked=True,
        ),
        StreamSpec(
            logical=DLQ,
            name=stream_name(s, DLQ),
            subjects=(s.dlq_all,),
            description="Messages their consumer gave up on, with origin and reason",
            max_age=tuning.DLQ_MAX_AGE,
            duplicate_window=tuning.DLQ_DUPLICATE_WINDOW,
        ),
    )
    buckets = (
        BucketSpec(
            PROJECTION,
            f"{s.prefix}_{PROJECTION}",
            "Lean HA projection: entity -> state, last_changed, context id",
            history=tuning.PROJECTION_HISTORY,
        ),
        BucketSpec(
            IDEMPOTENCY,
            f"{s.prefix}_{IDEMPOTENCY}",
            "Idempotency ledger: keys of completed effects, expiring after the window",
            ttl=tuning.IDEMPOTENCY_TTL,
        ),
        BucketSpec(
            TIMERS,
            f"{s.prefix}_{TIMERS}",
            "Engine timers (for, delay, wait_for deadlines) that survive restarts",
            history=tuning.TIMERS_HISTORY,
        ),
        BucketSpec(
            STATUS,
            f"{s.prefix}_{STATUS}",
            "Per-service status records (connected since, counters)",
            ttl=tuning.STATUS_TTL,
        ),
        BucketSpec(
            API_TOKENS,
            f"{s.prefix}_{API_TOKENS}",
            "API tokens: name, scope and SHA-256 digest, never the token (ADR-0020)",
        ),
    )
    consumers = (
        ConsumerSpec(
            stream=stream_name(s, EVENTS),
            durable=ENGINE,
            filter_subjects=(s.ha_all, s.webhooks_all),
            description="The engine evaluates rules on Home Assistant states and events, "
            "and on webhooks called through the API",
        ),
        ConsumerSpec(
            stream=stream_name(s, COMMANDS),
            durable=GATEWAY,
            filter_subjects=(s.commands_all,),
            description="The gateway executes Home Assistant service calls",
            ack_wait=tuning.COMMAND_ACK_WAIT,
        ),
        ConsumerSpec(
            stream=stream_name(s, AUDIT),
            durable=AUDIT_SINK,
            filter_subjects=(s.audit_all,),
            description="The audit sink stores every audit record",
            self_created=True,
        ),
    )
    return Topology(subjects=s, streams=streams, buckets=buckets, consumers=consumers)
