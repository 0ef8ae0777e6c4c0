"""Who may do what on NATS: one declarative table, rendered into nats-server's authorization.

``NEEDS`` says, in the topology's own terms, what each service's job needs: the durable
consumers it pulls from, the subject families it produces, the KV buckets it reads or
writes, the single KV keys of another service it follows (reads once, then receives
every put on a core subscription: services cannot create the consumer a KV watch needs), and
the streams it reads (and deletes single messages from) by sequence, without a consumer.
``permissions(subjects)`` turns it, with the operator's grants, into per-identity
publish and subscribe allow-lists; ``render_authorization`` writes them into the
``authorization {}`` block of nats-server's configuration, users keyed by NKEY public key.
Nothing else grants anything: a subject missing here is refused by the server (ADR-0005).

Request/reply between services (ADR-0036): a service that ``answers`` an API
(``subjects.API_VERBS``) subscribes to exactly its request subjects, and may publish a reply
only to the inbox of a request it received, once (nats-server's ``allow_responses``), never to
any inbox at will; a service that ``asks`` may publish exactly those request subjects, and
gets the reply on its own inbox.

Services never create, update or delete streams or consumers and never purge: the operator
identity (rubyctl) applies the topology, except the audit sink's durable, which the sink
creates itself so that the operator cannot touch it. The operator may create AUDIT but never
change, purge or delete it, nor touch its consumer (ADR-0005). Each identity receives replies
only on its own inbox, ``_INBOX_<identity>.>``, which ``ruby_natsx.connection`` sets as
nats-py's ``inbox_prefix``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ruby_natsx.subjects import API_VERBS, AUDIT_API, Subjects, check_token
from ruby_natsx.topology import (
    API_TOKENS,
    AUDIT,
    AUDIT_SINK,
    DLQ,
    ENGINE,
    EVENT_TYPES_KEY,
    EVENTS,
    GATEWAY,
    IDEMPOTENCY,
    PROJECTION,
    RULES_KEY,
    STATUS,
    TIMERS,
    TRACES_KEY,
    Topology,
    topology,
)

OPERATOR: Final = "operator"
"""The identity of ``rubyctl``: applies the topology, reads the DLQ and AUDIT, replays."""

SERVICES: Final = (GATEWAY, ENGINE, AUDIT_SINK)
IDENTITIES: Final = (*SERVICES, OPERATOR)


class Produces(StrEnum):
    """A family of subjects a service publishes."""

    HA = "ha"  # <p>.evt.ha.>: Home Assistant states and events
    OUTCOMES = "outcomes"  # <p>.evt.cmd.>: outcomes of executed commands
    RULES = "rules"  # <p>.evt.engine.>: rule lifecycle events
    COMMANDS = "commands"  # <p>.cmd.>: Home Assistant service calls to execute
    WEBHOOKS = "webhooks"  # <p>.evt.api.webhook.>: webhooks called through the API


class Access(StrEnum):
    """How a service uses a KV bucket."""

    READ = "read"
    READ_WRITE = "read-write"
    OWN_KEY = "own-key"  # write only the key named after the identity (and below it)
    FOLLOW = "follow"  # read every key, and receive every put on a core subscription


class StreamAccess(StrEnum):
    """How a service uses a stream it does not consume: by sequence, never by a consumer, never
    a purge or a change of the stream (ADR-0038)."""

    READ = "read"  # its state (first and last sequence) and its messages by sequence
    TRIAGE = "triage"  # READ, and delete one message at a time
    TAIL = "tail"  # its state, its messages in order by direct gets, and a bell on its subjects


@dataclass(frozen=True)
class Needs:
    """What one service's job needs, named by the topology."""

    consumers: tuple[str, ...] = ()
    produces: tuple[Produces, ...] = ()
    buckets: tuple[tuple[str, Access], ...] = ()
    follows: tuple[tuple[str, str], ...] = ()
    """(bucket, key) pairs written by another service: read that one key, receive its puts."""
    reads: tuple[tuple[str, str], ...] = ()
    """(bucket, key) pairs written by another service that it only reads (``>`` below a key)."""
    streams: tuple[tuple[str, StreamAccess], ...] = ()
    """(stream, access) pairs: streams it reads by sequence (and, for TRIAGE, deletes from);
    never a locked stream (AUDIT) for TRIAGE."""
    answers: tuple[str, ...] = ()
    """The request/reply APIs it answers (``subjects.API_VERBS``): it subscribes to their
    request subjects and replies once to each request's inbox."""
    asks: tuple[str, ...] = ()
    """The request/reply APIs it asks: it publishes their request subjects."""


NEEDS: Final[Mapping[str, Needs]] = MappingProxyType(
    {
        GATEWAY: Needs(
            consumers=(GATEWAY,),
            # COMMANDS: the API's calls and events; WEBHOOKS: the API's webhooks (ADR-0037)
            produces=(Produces.HA, Produces.OUTCOMES, Produces.COMMANDS, Produces.WEBHOOKS),
            buckets=(
                (PROJECTION, Access.READ_WRITE),
                (IDEMPOTENCY, Access.READ_WRITE),  # its command ledger: nobody else's
                (STATUS, Access.OWN_KEY),
                (API_TOKENS, Access.FOLLOW),  # the API checks each request, sees revocations
            ),
            follows=((STATUS, EVENT_TYPES_KEY),),  # the HA event types to forward
            reads=((STATUS, RULES_KEY), (STATUS, f"{TRACES_KEY}.>")),  # the API's /rules
            streams=(
                (DLQ, StreamAccess.TRIAGE),  # the API's /dlq: list, show, replay, delete
                (EVENTS, StreamAccess.TAIL),  # the API's event stream, /api/v1/ws
            ),
            asks=(AUDIT_API,),  # the API's /audit: the sink answers from its store
        ),
        ENGINE: Needs(
            consumers=(ENGINE,),
            produces=(Produces.COMMANDS, Produces.RULES),
            buckets=(
                (TIMERS, Access.READ_WRITE),
                (PROJECTION, Access.READ),
                (STATUS, Access.OWN_KEY),
            ),
        ),
        AUDIT_SINK: Needs(
            consumers=(AUDIT_SINK,),
            buckets=((STATUS, Access.OWN_KEY),),
            streams=((EVENTS, StreamAccess.READ),),  # GET /audit/why: the triggering change
            answers=(AUDIT_API,),  # query, why, verify, for the gateway's API
        ),
    }
)
"""THE table: every service's needs. Every service also publishes its own audit records.

The idempotency ledger is the gateway's alone (ADR-0005): only its command runner keeps keys
there; a service that needs a ledger later gets its own key prefix, not the gateway's keys."""

_FAMILIES: Final[Mapping[Produces, Callable[[Subjects], str]]] = MappingProxyType(
    {
        Produces.HA: lambda s: s.ha_all,
        Produces.OUTCOMES: lambda s: s.outcomes_all,
        Produces.RULES: lambda s: s.rules_all,
        Produces.COMMANDS: lambda s: s.commands_all,
        Produces.WEBHOOKS: lambda s: s.webhooks_all,
    }
)

JS_API: Final = "$JS.API"
JS_ACK: Final = "$JS.ACK"


@dataclass(frozen=True)
class Grant:
    """One subject (wildcards allowed) and the reason it is granted."""

    subject: str
    why: str


@dataclass(frozen=True)
class Responses:
    """nats-server's ``allow_responses``: after receiving a request, the identity may publish
    ``max`` replies to that request's reply subject, within ``expires``, and no more."""

    max: int
    expires: str
    why: str


RESPONSES: Final = Responses(
    max=1, expires="1m", why="one reply to each request it received, to the asker's inbox"
)
"""What a service that answers an API gets: a requester waits seconds, not a minute."""


@dataclass(frozen=True)
class Permissions:
    """What one identity may publish and subscribe to; everything else is refused."""

    identity: str
    publish: tuple[Grant, ...]
    subscribe: tuple[Grant, ...]
    deny_publish: tuple[Grant, ...] = ()
    responses: Responses | None = None
    """Replies to requests it received; None: it may publish only what ``publish`` allows."""

    def may_publish(self, subject: str) -> bool:
        """Whether the server lets this identity publish to the concrete ``subject`` at will.

        A reply under ``responses`` is not counted: the server allows it only to the reply
        subject of a request just received (`may_reply`)."""
        return _allowed(subject, self.publish) and not _allowed(subject, self.deny_publish)

    @property
    def may_reply(self) -> bool:
        """Whether it may answer a request it received on the request's own reply subject."""
        return self.responses is not None and self.responses.max > 0

    def may_subscribe(self, subject: str) -> bool:
        """Whether the server lets this identity subscribe to ``subject`` (may be a wildcard)."""
        return _allowed(subject, self.subscribe)


def inbox_prefix(identity: str) -> str:
    """The inbox prefix of one identity: ``_INBOX_<identity>``; only it may read below it."""
    return f"_INBOX_{check_token(identity, 'identity')}"


def permissions(subjects: Subjects, *, break_glass: bool = False) -> tuple[Permissions, ...]:
    """Every identity's permissions for the installation named by ``subjects``, in order.

    ``break_glass`` lifts one deny, the operator's on updating AUDIT's configuration: only
    ``rubyctl up --audit-break-glass`` renders it (audited), and renders the locked table
    again before it stops (ADR-0005)."""
    topo = topology(subjects)
    services = tuple(_service(topo, identity, NEEDS[identity]) for identity in SERVICES)
    return (*services, _operator(topo, break_glass=break_glass))


def permissions_of(subjects: Subjects, identity: str) -> Permissions:
    """One identity's permissions; ``KeyError`` for an identity the table does not know."""
    for perms in permissions(subjects):
        if perms.identity == identity:
            return perms
    raise KeyError(f"no permissions are declared for identity {identity!r}")


def _service(topo: Topology, identity: str, needs: Needs) -> Permissions:
    s = topo.subjects
    publish: list[Grant] = []
    for durable in needs.consumers:
        consumer = topo.consumer(durable)
        stream, name = consumer.stream, consumer.durable
        publish += [
            Grant(f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{name}", "pull from its durable"),
            Grant(f"{JS_API}.CONSUMER.INFO.{stream}.{name}", "read its consumer's state"),
            Grant(f"{JS_API}.STREAM.INFO.{stream}", "read the stream it consumes"),
            Grant(f"{JS_ACK}.{stream}.{name}.>", "ack, nak, term and in-progress its deliveries"),
            Grant(s.dlq(stream, name), "dead-letter what its consumer gives up on"),
        ]
        if consumer.self_created:  # the filter is in the subject: the server holds it to it
            (only,) = consumer.filter_subjects
            publish.append(
                Grant(
                    f"{JS_API}.CONSUMER.CREATE.{stream}.{name}.{only}",
                    "create its durable, which the operator may not touch",
                )
            )
    for family in needs.produces:
        publish.append(Grant(_FAMILIES[family](s), f"produce {family.value} messages"))
    publish.append(Grant(s.audit_of(identity), "its own audit records"))
    subscribe = [Grant(f"{inbox_prefix(identity)}.>", "replies, pull deliveries and publish acks")]
    for logical, access in needs.buckets:
        publish += _bucket_grants(topo, logical, access, identity)
        if access is Access.FOLLOW:
            name = topo.bucket(logical).bucket
            subscribe.append(Grant(f"$KV.{name}.>", f"receive every put of {name}"))
    for logical, key in needs.follows:
        bucket = topo.bucket(logical)
        subject = f"$KV.{bucket.bucket}.{key}"
        publish.append(
            Grant(f"{JS_API}.DIRECT.GET.{bucket.stream().name}.{subject}", f"read {key} at start")
        )
        subscribe.append(Grant(subject, f"receive every put of {key}"))
    for logical, key in needs.reads:
        bucket = topo.bucket(logical)
        publish.append(
            Grant(
                f"{JS_API}.DIRECT.GET.{bucket.stream().name}.$KV.{bucket.bucket}.{key}",
                f"read {key}",
            )
        )
    for logical, stream_access in needs.streams:
        publish += _stream_grants(topo, logical, stream_access)
        if stream_access is StreamAccess.TAIL:
            tailed = topo.stream(logical)
            subscribe += [
                Grant(subject, f"hear that {tailed.name} stored something new")
                for subject in tailed.subjects
            ]
    for api in needs.asks:
        publish += [Grant(s.api(api, v), f"ask the {api} API: {v}") for v in API_VERBS[api]]
    for api in needs.answers:
        subscribe += [Grant(s.api(api, v), f"answer the {api} API: {v}") for v in API_VERBS[api]]
    responses = RESPONSES if needs.answers else None
    return Permissions(identity, _unique(publish), tuple(subscribe), responses=responses)


def _stream_grants(topo: Topology, logical: str, access: StreamAccess) -> list[Grant]:
    """By sequence only: the non-direct get is the one whose subject names the stream and
    nothing else; a consumer would let it ack (or starve) deliveries, a purge empty it."""
    spec = topo.stream(logical)
    if access is StreamAccess.TRIAGE and spec.locked:
        raise ValueError(f"{spec.name} is locked: nobody may delete its messages")
    name = spec.name
    grants = [Grant(f"{JS_API}.STREAM.INFO.{name}", f"read {name}'s first and last sequence")]
    if access is StreamAccess.TAIL:  # pages of messages in order (the subscription: _service)
        grants.append(Grant(f"{JS_API}.DIRECT.GET.{name}", f"read {name} in sequence order"))
        return grants
    grants.append(Grant(f"{JS_API}.STREAM.MSG.GET.{name}", f"read {name}'s messages by sequence"))
    if access is StreamAccess.TRIAGE:
        grants.append(
            Grant(f"{JS_API}.STREAM.MSG.DELETE.{name}", f"delete one {name} message at a time")
        )
    return grants


def _bucket_grants(topo: Topology, logical: str, access: Access, identity: str) -> list[Grant]:
    bucket = topo.bucket(logical)
    name, stream = bucket.bucket, bucket.stream().name
    grants = [Grant(f"{JS_API}.STREAM.INFO.{stream}", f"open the {name} bucket")]
    if access in (Access.READ, Access.READ_WRITE, Access.FOLLOW):
        grants += [
            Grant(f"{JS_API}.DIRECT.GET.{stream}.>", f"read {name} keys"),
            Grant(f"{JS_API}.DIRECT.GET.{stream}", f"read {name} entries by revision"),
            Grant(f"{JS_API}.STREAM.MSG.GET.{stream}", f"read {name} (non-direct)"),
        ]
    if access is Access.READ_WRITE:
        grants.append(Grant(f"$KV.{name}.>", f"write {name} keys"))
    if access is Access.OWN_KEY:
        key = check_token(identity, "identity")
        grants += [
            Grant(f"$KV.{name}.{key}", f"write its own {name} record"),
            Grant(f"$KV.{name}.{key}.>", f"write keys below its own {name} record"),
            Grant(
                f"{JS_API}.DIRECT.GET.{stream}.$KV.{name}.{key}.>",
                f"read back the keys below its own {name} record (after a restart)",
            ),
        ]
    return grants


def _operator(topo: Topology, *, break_glass: bool) -> Permissions:
    s = topo.subjects
    dlq = topo.stream(DLQ).name
    publish = (
        Grant(f"{JS_API}.>", "apply the topology; inspect streams, consumers, DLQ and AUDIT"),
        Grant(f"{JS_ACK}.{dlq}.>", "acknowledge what it reads from the DLQ"),
        Grant(s.events_all, "replay dead letters to their original subjects"),
        Grant(s.commands_all, "replay dead-lettered commands"),
        Grant(s.audit_all, "replay dead-lettered audit records; its own audit records"),
        Grant(
            f"$KV.{topo.bucket(API_TOKENS).bucket}.>",
            "create and revoke API tokens (their digests: rubyctl token)",
        ),
    )
    deny = _audit_locks(topo, break_glass=break_glass) + _bucket_locks(topo)
    inbox = Grant(f"{inbox_prefix(OPERATOR)}.>", "replies and deliveries on its own inbox")
    return Permissions(OPERATOR, publish, (inbox,), deny)


def _audit_locks(topo: Topology, *, break_glass: bool) -> tuple[Grant, ...]:
    """What the operator may never do to AUDIT or its consumer, though ``$JS.API.>`` allows
    it: the trail's configuration is fixed once created, and only the audit sink, which
    creates its durable itself, touches that. ``break_glass`` lifts the update lock alone."""
    audit = topo.stream(AUDIT).name
    stream = f"{JS_API}.STREAM"
    consumer = f"{JS_API}.CONSUMER"
    update = Grant(
        f"{stream}.UPDATE.{audit}",
        "AUDIT's configuration (subjects, limits, discard, retention) is locked; only a "
        "break-glass authorization lifts this",
    )
    locks = (
        Grant(
            f"{stream}.DELETE.{audit}",
            "the audit trail is append-only; the stream itself denies purges and message "
            "deletes, but cannot deny its own deletion",
        ),
        Grant(f"{stream}.PURGE.{audit}", "append-only (the stream denies it too)"),
        Grant(f"{stream}.MSG.DELETE.{audit}", "append-only (the stream denies it too)"),
        Grant(f"{stream}.RESTORE.{audit}", "a restore would replace the trail"),
        Grant(f"{stream}.PEER.REMOVE.{audit}", "nobody's job"),
        Grant(f"{consumer}.CREATE.{audit}", "no consumer of AUDIT but the audit sink's"),
        Grant(f"{consumer}.CREATE.{audit}.>", "the audit sink creates its durable itself"),
        Grant(f"{consumer}.DURABLE.CREATE.{audit}.>", "the same, by the legacy subject"),
        Grant(f"{consumer}.DELETE.{audit}.>", "deleting the sink's durable stops the store"),
        Grant(f"{consumer}.MSG.NEXT.{audit}.>", "pulling the sink's deliveries starves it"),
        Grant(f"{consumer}.PAUSE.{audit}.>", "pausing the sink's durable stops the store"),
        Grant(f"{consumer}.UNPIN.{audit}.>", "nobody's job"),
        Grant(f"{consumer}.RESET.{audit}.>", "resetting the sink's durable skips records"),
    )
    return locks if break_glass else (update, *locks)


def _bucket_locks(topo: Topology) -> tuple[Grant, ...]:
    """Purging a bucket (or some of its keys) is nobody's job: a purged ledger key would let a
    command run again. Buckets deny message deletes themselves."""
    return tuple(
        Grant(f"{JS_API}.STREAM.PURGE.{b.stream().name}", f"the {b.bucket} keys are its writers'")
        for b in topo.buckets
    )


def render_authorization(
    perms: Sequence[Permissions], public_keys: Mapping[str, str], *, installation: str
) -> str:
    """The ``authorization {}`` block: one NKEY user per identity, with its permissions.

    ``public_keys`` maps each identity to its NKEY *public* key (``U...``); a missing one, or
    a value that is not a public user key, raises ``ValueError``. Each grant's reason is
    written beside it as a comment, so the rendered file explains itself.
    """
    lines = [
        "authorization {",
        f"  # Rendered from ruby_natsx.permissions for installation {installation!r}.",
        "  # NKEY public keys only; every subject not listed here is refused.",
        "  users: [",
    ]
    for p in perms:
        key = public_keys.get(p.identity)
        if key is None or not _is_public_user_key(key):
            raise ValueError(f"no NKEY public user key for identity {p.identity!r}")
        lines += [f"    # {p.identity}", "    {", f'      nkey: "{key}"', "      permissions: {"]
        lines += _render_side("publish", p.publish, p.deny_publish)
        lines += _render_side("subscribe", p.subscribe, ())
        if p.responses is not None:
            r = p.responses
            lines.append(
                f'        allow_responses: {{max: {r.max}, expires: "{r.expires}"}}  # {r.why}'
            )
        lines += ["      }", "    }"]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _render_side(side: str, allow: Sequence[Grant], deny: Sequence[Grant]) -> list[str]:
    lines = [f"        {side}: {{", "          allow: ["]
    lines += [f'            "{g.subject}"  # {g.why}' for g in allow]
    lines.append("          ]")
    if deny:
        lines.append("          deny: [")
        lines += [f'            "{g.subject}"  # {g.why}' for g in deny]
        lines.append("          ]")
    lines.append("        }")
    return lines


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS matching: ``*`` is one token, a final ``>`` one or more; else tokens are equal."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(have) == len(want)


def _allowed(subject: str, grants: Sequence[Grant]) -> bool:
    return any(subject_matches(g.subject, subject) for g in grants)


def _unique(grants: Sequence[Grant]) -> tuple[Grant, ...]:
    seen: dict[str, Grant] = {}
    for grant in grants:
        seen.setdefault(grant.subject, grant)
    return tuple(seen.values())


def _is_public_user_key(key: str) -> bool:
    return len(key) == 56 and key.startswith("U") and key.isalnum() and key.isupper()
