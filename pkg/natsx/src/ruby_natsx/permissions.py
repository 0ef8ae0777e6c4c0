"""Who may do what on NATS: one declarative table, rendered into nats-server's authorization.

``NEEDS`` says, in the topology's own terms, what each service's job needs: the durable
consumers it pulls from, the subject families it produces, the KV buckets it reads or
writes, and the single KV keys of another service it follows (reads once, then receives
every put on a core subscription: services cannot create the consumer a KV watch needs).
``permissions(subjects)`` turns it, with the operator's grants, into per-identity
publish and subscribe allow-lists; ``render_authorization`` writes them into the
``authorization {}`` block of nats-server's configuration, users keyed by NKEY public key.
Nothing else grants anything: a subject missing here is refused by the server (ADR-0005).

Services never create, update or delete streams or consumers and never purge: the operator
identity (rubyctl) applies the topology. Each identity receives replies only on its own inbox,
``_INBOX_<identity>.>``, which ``ruby_natsx.connection`` sets as nats-py's ``inbox_prefix``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ruby_natsx.subjects import Subjects, check_token
from ruby_natsx.topology import (
    AUDIT,
    AUDIT_SINK,
    DLQ,
    ENGINE,
    EVENT_TYPES_KEY,
    GATEWAY,
    IDEMPOTENCY,
    PROJECTION,
    STATUS,
    TIMERS,
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


class Access(StrEnum):
    """How a service uses a KV bucket."""

    READ = "read"
    READ_WRITE = "read-write"
    OWN_KEY = "own-key"  # write only the key named after the identity (and below it)


@dataclass(frozen=True)
class Needs:
    """What one service's job needs, named by the topology."""

    consumers: tuple[str, ...] = ()
    produces: tuple[Produces, ...] = ()
    buckets: tuple[tuple[str, Access], ...] = ()
    follows: tuple[tuple[str, str], ...] = ()
    """(bucket, key) pairs written by another service: read that one key, receive its puts."""


NEEDS: Final[Mapping[str, Needs]] = MappingProxyType(
    {
        GATEWAY: Needs(
            consumers=(GATEWAY,),
            produces=(Produces.HA, Produces.OUTCOMES),
            buckets=(
                (PROJECTION, Access.READ_WRITE),
                (IDEMPOTENCY, Access.READ_WRITE),
                (STATUS, Access.OWN_KEY),
            ),
            follows=((STATUS, EVENT_TYPES_KEY),),  # the HA event types to forward
        ),
        ENGINE: Needs(
            consumers=(ENGINE,),
            produces=(Produces.COMMANDS, Produces.RULES),
            buckets=(
                (TIMERS, Access.READ_WRITE),
                (PROJECTION, Access.READ),
                (IDEMPOTENCY, Access.READ_WRITE),
                (STATUS, Access.OWN_KEY),
            ),
        ),
        AUDIT_SINK: Needs(
            consumers=(AUDIT_SINK,),
            buckets=((IDEMPOTENCY, Access.READ_WRITE), (STATUS, Access.OWN_KEY)),
        ),
    }
)
"""THE table: every service's needs. Every service also publishes its own audit records."""

_FAMILIES: Final[Mapping[Produces, Callable[[Subjects], str]]] = MappingProxyType(
    {
        Produces.HA: lambda s: s.ha_all,
        Produces.OUTCOMES: lambda s: s.outcomes_all,
        Produces.RULES: lambda s: s.rules_all,
        Produces.COMMANDS: lambda s: s.commands_all,
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
class Permissions:
    """What one identity may publish and subscribe to; everything else is refused."""

    identity: str
    publish: tuple[Grant, ...]
    subscribe: tuple[Grant, ...]
    deny_publish: tuple[Grant, ...] = ()

    def may_publish(self, subject: str) -> bool:
        """Whether the server lets this identity publish to the concrete ``subject``."""
        return _allowed(subject, self.publish) and not _allowed(subject, self.deny_publish)

    def may_subscribe(self, subject: str) -> bool:
        """Whether the server lets this identity subscribe to ``subject`` (may be a wildcard)."""
        return _allowed(subject, self.subscribe)


def inbox_prefix(identity: str) -> str:
    """The inbox prefix of one identity: ``_INBOX_<identity>``; only it may read below it."""
    return f"_INBOX_{check_token(identity, 'identity')}"


def permissions(subjects: Subjects) -> tuple[Permissions, ...]:
    """Every identity's permissions for the installation named by ``subjects``, in order."""
    topo = topology(subjects)
    services = tuple(_service(topo, identity, NEEDS[identity]) for identity in SERVICES)
    return (*services, _operator(topo))


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
    for family in needs.produces:
        publish.append(Grant(_FAMILIES[family](s), f"produce {family.value} messages"))
    publish.append(Grant(s.audit_of(identity), "its own audit records"))
    for logical, access in needs.buckets:
        publish += _bucket_grants(topo, logical, access, identity)
    subscribe = [Grant(f"{inbox_prefix(identity)}.>", "replies, pull deliveries and publish acks")]
    for logical, key in needs.follows:
        bucket = topo.bucket(logical)
        subject = f"$KV.{bucket.bucket}.{key}"
        publish.append(
            Grant(f"{JS_API}.DIRECT.GET.{bucket.stream().name}.{subject}", f"read {key} at start")
        )
        subscribe.append(Grant(subject, f"receive every put of {key}"))
    return Permissions(identity, _unique(publish), tuple(subscribe))


def _bucket_grants(topo: Topology, logical: str, access: Access, identity: str) -> list[Grant]:
    bucket = topo.bucket(logical)
    name, stream = bucket.bucket, bucket.stream().name
    grants = [Grant(f"{JS_API}.STREAM.INFO.{stream}", f"open the {name} bucket")]
    if access in (Access.READ, Access.READ_WRITE):
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


def _operator(topo: Topology) -> Permissions:
    s = topo.subjects
    dlq, audit = topo.stream(DLQ).name, topo.stream(AUDIT).name
    publish = (
        Grant(f"{JS_API}.>", "apply the topology; inspect streams, consumers, DLQ and AUDIT"),
        Grant(f"{JS_ACK}.{dlq}.>", "acknowledge what it reads from the DLQ"),
        Grant(s.events_all, "replay dead letters to their original subjects"),
        Grant(s.commands_all, "replay dead-lettered commands"),
        Grant(s.audit_all, "replay dead-lettered audit records; its own audit records"),
    )
    deny = (
        Grant(
            f"{JS_API}.STREAM.DELETE.{audit}",
            "the audit trail is append-only; the stream itself denies purges and message "
            "deletes, but cannot deny its own deletion",
        ),
    )
    inbox = Grant(f"{inbox_prefix(OPERATOR)}.>", "replies and deliveries on its own inbox")
    return Permissions(OPERATOR, publish, (inbox,), deny)


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
