"""Make the server match a declared topology, idempotently.

For each stream, bucket and consumer: create it if missing; if it exists, compare the fields
the declaration owns; leave it alone when they match, update it when they differ, and re-read
it to prove the server took the change. A change JetStream refuses (or silently keeps the old
value for) raises ``IncompatibleChangeError`` naming the object and the fields; nothing is
ever ignored quietly. A stream declared ``locked`` (AUDIT) is created but never updated: a
difference raises ``LockedStreamError``, which names the break-glass procedure (ADR-0005).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from ruby_natsx.topology import ConsumerSpec, StreamSpec, Topology


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldDiff:
    field: str
    current: object
    declared: object

    def __str__(self) -> str:
        return f"{self.field}: {self.current!r} -> {self.declared!r}"


@dataclass(frozen=True)
class Change:
    """What applying did to one object."""

    kind: str
    name: str
    action: Action
    diffs: tuple[FieldDiff, ...] = ()

    def __str__(self) -> str:
        detail = f" ({'; '.join(map(str, self.diffs))})" if self.diffs else ""
        return f"{self.kind} {self.name}: {self.action.value}{detail}"


class IncompatibleChangeError(RuntimeError):
    """The server holds an object whose declared change JetStream does not allow."""

    def __init__(self, kind: str, name: str, diffs: Sequence[FieldDiff], reason: str) -> None:
        self.kind = kind
        self.name = name
        self.diffs = tuple(diffs)
        self.reason = reason
        fields = "; ".join(map(str, self.diffs))
        super().__init__(
            f"{kind} {name!r} cannot be changed in place ({reason}); differing fields: {fields}. "
            "Migrate it deliberately (new name, or back up, delete and re-create)."
        )


BREAK_GLASS: Final = (
    "the audit trail's configuration is locked: nobody in day-to-day operation may change it. "
    "If the change is intended, break the glass with the stack stopped: `rubyctl up "
    "--audit-break-glass` renders an authorization that lets the operator update AUDIT, applies "
    "the declaration, renders the locked one again and stops, each step audited (README, "
    "Security model; docs/adr/0005)"
)


class LockedStreamError(IncompatibleChangeError):
    """A locked stream (AUDIT) on the server differs from its declaration; nothing was changed."""

    def __init__(self, kind: str, name: str, diffs: Sequence[FieldDiff]) -> None:
        super().__init__(kind, name, diffs, "locked")
        fields = "; ".join(map(str, self.diffs))
        self.args = (
            f"{kind} {name!r} differs from its declaration ({fields}) and was left as it is: "
            f"{BREAK_GLASS}.",
        )


async def apply_topology(
    js: JetStreamContext, topology: Topology, *, operator: bool = False, break_glass: bool = False
) -> list[Change]:
    """Apply streams, then buckets, then consumers; return what happened to each, in order.

    Safe to run concurrently with traffic and any number of times: a second run reports every
    object as unchanged. Stops at the first incompatible change. ``operator``: applied as the
    operator identity, which leaves the consumers a service creates itself (``self_created``)
    to that service. ``break_glass``: a locked stream that differs is updated (only an
    authorization rendered for break-glass lets the operator do it); without it, a difference
    raises ``LockedStreamError``.
    """
    changes: list[Change] = []
    for stream in topology.streams:
        changes.append(await apply_stream(js, stream, kind="stream", break_glass=break_glass))
    for bucket in topology.buckets:
        changes.append(await apply_stream(js, bucket.stream(), kind="bucket"))
    for consumer in topology.consumers:
        if not (operator and consumer.self_created):
            changes.append(await apply_consumer(js, consumer))
    return changes


async def apply_stream(
    js: JetStreamContext, spec: StreamSpec, *, kind: str = "stream", break_glass: bool = False
) -> Change:
    """Create or update one stream (a KV bucket is a stream too); a ``locked`` one only with
    ``break_glass``, else ``LockedStreamError``."""
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(spec.to_config())
        return Change(kind, spec.name, Action.CREATED)
    diffs = _diff(spec.declared(), info.config)
    if not diffs:
        return Change(kind, spec.name, Action.UNCHANGED)
    if spec.locked and not break_glass:
        raise LockedStreamError(kind, spec.name, diffs)
    try:
        await js.update_stream(spec.to_config())
    except APIError as exc:
        raise IncompatibleChangeError(kind, spec.name, diffs, _reason(exc)) from exc
    left = _diff(spec.declared(), (await js.stream_info(spec.name)).config)
    if left:
        raise IncompatibleChangeError(kind, spec.name, left, "the server kept the old values")
    return Change(kind, spec.name, Action.UPDATED, tuple(diffs))


async def apply_consumer(js: JetStreamContext, spec: ConsumerSpec) -> Change:
    """Create or update one durable pull consumer (a service applies its ``self_created`` one
    at start, through the filtered create subject its grant names)."""
    name = f"{spec.stream}/{spec.durable}"
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:
        await js.add_consumer(spec.stream, spec.to_config())
        return Change("consumer", name, Action.CREATED)
    diffs = _diff(spec.declared(), _with_filters(info.config))
    if not diffs:
        return Change("consumer", name, Action.UNCHANGED)
    try:
        await js.add_consumer(spec.stream, spec.to_config())
    except APIError as exc:
        raise IncompatibleChangeError("consumer", name, diffs, _reason(exc)) from exc
    current = await js.consumer_info(spec.stream, spec.durable)
    left = _diff(spec.declared(), _with_filters(current.config))
    if left:
        raise IncompatibleChangeError("consumer", name, left, "the server kept the old values")
    return Change("consumer", name, Action.UPDATED, tuple(diffs))


def _with_filters(config: api.ConsumerConfig) -> Mapping[str, object]:
    """The server reports one filter as ``filter_subject`` and several as ``filter_subjects``."""
    fields = {k: _normal(v) for k, v in vars(config).items()}
    filters = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
    fields["filter_subjects"] = tuple(filters)
    return fields


def _diff(declared: Mapping[str, object], config: object) -> list[FieldDiff]:
    current = config if isinstance(config, Mapping) else vars(config)
    diffs = []
    for field, want in declared.items():
        have = _normal(current.get(field))
        if have != _normal(want):
            diffs.append(FieldDiff(field, have, want))
    return diffs


def _normal(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return tuple(_normal(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        return None
    return value


def _reason(exc: APIError) -> str:
    return str(exc.description or exc)
