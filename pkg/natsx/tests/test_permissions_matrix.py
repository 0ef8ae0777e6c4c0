"""The permission matrix, against a real nats-server with TLS and one NKEY user per identity.

For every identity, each grant of its table is exercised as the real operation it stands for
(pull and ack, consumer and stream info, KV reads and writes, publishing) and must succeed with
no permission violation. Then every grant of the *other* identities that the table does not
give it is attempted and must be refused by the server, and so must a fixed list of actions
nobody's job needs (creating, updating, deleting streams and consumers, purging or deleting
from AUDIT, consuming another's consumer, reading another's inbox or raw traffic). The
operator's refusals on AUDIT come from its deny rules (the stream also denies purges and
deletes). The matrix prints its counts. What an attacker holding one identity's credentials
would try against the others' state, drawn up from the services' jobs rather than from this
table, is ``test_permissions_attacker.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from ruby_ctl.probe import (
    ALLOWED,
    BY_PERMISSIONS,
    REFUSED,
    Act,
    Matrix,
    watching_violations,
)
from ruby_ctl.testing import Installation
from ruby_natsx.apply import Action, apply_consumer, apply_topology
from ruby_natsx.connection import flushed
from ruby_natsx.permissions import IDENTITIES, NEEDS, OPERATOR, SERVICES, permissions_of
from ruby_natsx.topology import (
    AUDIT,
    COMMANDS,
    DLQ,
    ENGINE,
    EVENT_TYPES_KEY,
    EVENTS,
    GATEWAY,
    RULES_KEY,
    TRACES_KEY,
)


def concrete(pattern: str) -> str:
    """A subject the pattern matches: each wildcard becomes ``probe`` (``written`` for KV
    writes, so that they leave the ``probe`` keys that the readers read)."""
    filler = "written" if pattern.startswith("$KV.") else "probe"
    return ".".join(filler if t in ("*", ">") else t for t in pattern.split("."))


@pytest_asyncio.fixture
async def matrix(installation: Installation) -> AsyncIterator[Matrix]:
    with watching_violations() as violations:
        clients = {i: await installation.connect(i, name=f"matrix-{i}") for i in IDENTITIES}
        yield Matrix(installation, violations, clients)
        for client in clients.values():
            await client.close()


async def _setup_kv(m: Matrix) -> dict[str, int]:
    """One key per readable bucket (and below each service's own status record), written by an
    identity allowed to write it."""
    revisions = {}
    for bucket, writer in (
        ("projection", GATEWAY),
        ("idempotency", GATEWAY),
        ("timers", ENGINE),
        ("api_tokens", OPERATOR),
    ):
        name = f"{m.inst.prefix}_{bucket}"
        ack = await m.js(writer).publish(f"$KV.{name}.probe", b"1")
        revisions[f"KV_{name}"] = ack.seq
    status = f"{m.inst.prefix}_status"
    for service in SERVICES:  # each service's own status key, which it may read back
        await m.js(service).publish(f"$KV.{status}.{service}.probe", b"1")
    await m.js(ENGINE).publish(f"$KV.{status}.{EVENT_TYPES_KEY}", b"{}")  # the gateway follows it
    for key in (RULES_KEY, f"{TRACES_KEY}.probe"):  # the engine's, which the gateway reads
        await m.js(ENGINE).publish(f"$KV.{status}.{key}", b"{}")
    return revisions


def _operation(m: Matrix, identity: str, pattern: str, revisions: dict[str, int]) -> Act:
    """The real operation a grant stands for, performed as ``identity``."""
    js, topo, s = m.js(identity), m.inst.topology, m.inst.subjects
    parts = pattern.split(".")

    async def pull_and_ack(stream: str, durable: str) -> None:
        spec = topo.consumer(durable)
        await m.js(OPERATOR).publish(concrete(spec.filter_subjects[0]), b"{}")
        sub = await js.pull_subscribe_bind(durable, stream=stream)
        try:
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.ack_sync()
        finally:
            await sub.unsubscribe()

    async def read_dead_letter() -> None:
        dlq = topo.stream(DLQ).name
        await m.js(GATEWAY).publish(s.dlq(topo.stream(COMMANDS).name, GATEWAY), b"{}")
        sub = await js.pull_subscribe(s.dlq_all, stream=dlq)
        try:
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.ack_sync()
        finally:
            await sub.unsubscribe()

    async def read_events() -> None:
        ack = await m.js(OPERATOR).publish(s.ha_state("light.probe"), b"{}")
        await js.get_msg(topo.stream(EVENTS).name, seq=ack.seq, direct=True)

    async def dead_letter_by_sequence(delete: bool) -> None:
        """Read (and delete) a dead letter by its DLQ sequence: the API's /dlq (ADR-0038)."""
        dlq = topo.stream(DLQ).name
        stored = await m.js(GATEWAY).publish(s.dlq(topo.stream(COMMANDS).name, GATEWAY), b"{}")
        assert (await js.get_msg(dlq, seq=stored.seq)).seq == stored.seq
        if delete:
            assert await js.delete_msg(dlq, stored.seq)

    async def apply() -> None:
        changes = await apply_topology(js, topo, operator=True)
        assert {c.action for c in changes} == {Action.UNCHANGED}

    async def publish(subject: str) -> None:
        ack = await js.publish(subject, b"{}")
        assert ack.stream

    async def read_one_event(stream: str) -> None:  # a state change, by subject (no consumer)
        subject = s.ha_state("light.probe")
        await m.js(OPERATOR).publish(subject, b"{}")
        assert (await js.get_msg(stream, subject=subject)).subject == subject

    if pattern.startswith("_INBOX"):
        return lambda: m.nc[identity].subscribe(concrete(pattern))
    if pattern == "$JS.API.>":
        return apply
    if pattern.startswith("$JS.API.CONSUMER.CREATE."):  # a service's own durable
        return lambda: apply_consumer(js, topo.consumer(parts[5]))
    if pattern.startswith("$JS.API.CONSUMER.MSG.NEXT."):
        return lambda: pull_and_ack(parts[-2], parts[-1])
    if parts[:2] == ["$JS", "ACK"]:
        if parts[2] == topo.stream(DLQ).name:
            return read_dead_letter
        return lambda: pull_and_ack(parts[2], parts[3])
    if pattern.startswith("$JS.API.CONSUMER.INFO."):
        return lambda: js.consumer_info(parts[-2], parts[-1])
    if pattern.startswith("$JS.API.STREAM.INFO."):
        return lambda: js.stream_info(parts[-1])
    if pattern.startswith("$JS.API.DIRECT.GET.") and parts[5:6] == ["$KV"]:  # one key (or below)
        key = ".".join(concrete(pattern).split(".")[5:])
        return lambda: js.get_msg(parts[4], subject=key, direct=True)
    if pattern.startswith("$JS.API.DIRECT.GET.") and pattern.endswith(".>"):
        stream = parts[4]
        keys = ".".join(parts[5:-1]) or f"$KV.{stream[3:]}"  # a whole bucket, or keys below one
        return lambda: js.get_msg(stream, subject=f"{keys}.probe", direct=True)
    if pattern == f"$JS.API.DIRECT.GET.{topo.stream(EVENTS).name}":  # the API's event stream
        return read_events
    if pattern.startswith("$JS.API.DIRECT.GET."):
        return lambda: js.get_msg(parts[4], seq=revisions[parts[4]], direct=True)
    if pattern.startswith("$JS.API.STREAM.MSG.") and parts[-1] == topo.stream(DLQ).name:
        return lambda: dead_letter_by_sequence(delete=parts[4] == "DELETE")
    if pattern.startswith("$JS.API.STREAM.MSG.GET.") and not parts[5].startswith("KV_"):
        return lambda: read_one_event(parts[5])
    if pattern.startswith("$JS.API.STREAM.MSG.GET."):
        return lambda: js.get_msg(parts[5], subject=f"$KV.{parts[5][3:]}.probe")
    if pattern.startswith(f"{s.prefix}.api."):  # a request: the answering identity replies
        return lambda: ask_and_answer(m, identity, pattern)
    if pattern.startswith("$KV."):
        return lambda: publish(concrete(pattern))
    if pattern.startswith(f"{s.prefix}."):
        return lambda: publish(concrete(pattern))
    raise AssertionError(f"the matrix has no operation for grant {pattern!r}: add one")


async def test_every_identity_can_do_exactly_what_its_table_says(
    matrix: Matrix, capsys: pytest.CaptureFixture[str]
) -> None:
    m = matrix
    revisions = await _setup_kv(m)
    tables = {i: permissions_of(m.inst.subjects, i) for i in IDENTITIES}

    # Allowed: every grant of every identity, as the operation it stands for.
    for identity, perms in tables.items():
        for grant in perms.publish:
            act = _operation(m, identity, grant.subject, revisions)
            await m.expect(identity, grant.why, act, ALLOWED, concrete(grant.subject))
        for grant in perms.subscribe:
            act = _receive(m, identity, grant.subject)
            await m.expect(identity, grant.why, act, ALLOWED, concrete(grant.subject))

    # Refused: every grant of the others that this identity's table does not give it.
    for identity, perms in tables.items():
        tried: set[str] = set()
        for other, theirs in tables.items():
            if other == identity:
                continue
            for grant in (*theirs.publish, *theirs.deny_publish):
                subject = concrete(grant.subject)
                if subject in tried or perms.may_publish(subject):
                    continue
                tried.add(subject)
                nc = m.nc[identity]
                await m.expect(
                    identity,
                    f"{other}'s {grant.why}",
                    _publish(nc, subject),
                    BY_PERMISSIONS,
                    subject,
                )
            for grant in theirs.subscribe:
                subject = concrete(grant.subject)
                if not perms.may_subscribe(subject):
                    act = _subscribe(m.nc[identity], subject)
                    what = f"{other}'s {grant.why}"
                    await m.expect(identity, what, act, BY_PERMISSIONS, subject)

    # Refused: what nobody's job needs, attempted as the real operations.
    for identity in IDENTITIES:
        for what, act, outcome, subject in _forbidden(m, identity):
            await m.expect(identity, what, act, outcome, subject)

    with capsys.disabled():
        print("\n" + m.counts("permission matrix"))
    assert not m.wrong, "\n".join(m.wrong)
    assert m.ok[ALLOWED] > 50
    assert m.ok[REFUSED] > 100


def _side(ask: bool) -> str:
    """The one service that asks the request/reply APIs (``ask``), or the one that answers."""
    (found,) = [i for i in SERVICES if (NEEDS[i].asks if ask else NEEDS[i].answers)]
    return found


async def ask_and_answer(m: Matrix, identity: str, request: str) -> None:
    """The asker sends ``request``; the answerer receives it and replies once, through
    ``allow_responses``, on the asker's inbox. ``identity`` is one of the two."""
    asker, answerer = m.nc[_side(ask=True)], m.nc[_side(ask=False)]
    assert identity in (_side(ask=True), _side(ask=False))

    async def reply(msg: Msg) -> None:
        await msg.respond(b"answered")

    sub = await answerer.subscribe(request, queue="matrix", cb=reply)
    try:
        await flushed(answerer)
        assert (await asker.request(request, b"{}", timeout=5)).data == b"answered"
    finally:
        await sub.unsubscribe()


def _receive(m: Matrix, identity: str, pattern: str) -> Act:
    """Subscribe as ``identity``; for a followed KV key, also receive a put of it; for a
    request subject, receive a request and answer it."""
    nc = m.nc[identity]
    if pattern.startswith("_INBOX"):
        return lambda: nc.subscribe(concrete(pattern))
    if pattern.startswith(f"{m.inst.prefix}.api."):
        return lambda: ask_and_answer(m, identity, pattern)
    if pattern == m.inst.subjects.events_all:  # the gateway hears EVENTS (its /api/v1/ws)
        writer = OPERATOR
        pattern = m.inst.subjects.ha_state("light.probe")
    else:
        assert pattern.startswith("$KV."), f"the matrix has no operation for {pattern!r}: add one"
        # The engine writes the status key others follow; the operator writes the API tokens.
        writer = OPERATOR if pattern.startswith(f"$KV.{m.inst.prefix}_api_tokens.") else ENGINE

    async def follow() -> None:
        sub = await nc.subscribe(pattern)
        try:
            await flushed(nc)
            await m.js(writer).publish(concrete(pattern), b"{}")
            await sub.next_msg(timeout=5)
        finally:
            await sub.unsubscribe()

    return follow


def _publish(nc: Client, subject: str) -> Act:
    return lambda: nc.publish(subject, b"{}")


def _subscribe(nc: Client, subject: str) -> Act:
    return lambda: nc.subscribe(subject)


def _forbidden(m: Matrix, identity: str) -> list[tuple[str, Act, str, str]]:
    """(what, operation, expected outcome, API subject) for what ``identity`` may not do."""
    js, topo, s = m.js(identity), m.inst.topology, m.inst.subjects
    audit, events = topo.stream(AUDIT).name, topo.stream(EVENTS).name
    rogue = f"{s.prefix.upper()}_ROGUE"
    operator = identity == OPERATOR
    nc = m.nc[identity]
    api_ = "$JS.API"

    async def update_audit_protection() -> None:
        config = topo.stream(AUDIT).to_config()
        config.deny_purge = False
        config.deny_delete = False
        await js.update_stream(config)

    async def first_audit_seq() -> int:
        info = await m.js(OPERATOR).stream_info(audit)
        return int(info.state.first_seq)

    async def delete_audit_message() -> None:
        await m.js(OPERATOR).publish(s.audit(OPERATOR, "probe"), b"{}")
        await js.delete_msg(audit, await first_audit_seq())

    rows: list[tuple[str, Act, str, str]] = [
        (
            "purge the audit trail",
            lambda: js.purge_stream(audit),
            BY_PERMISSIONS,
            f"{api_}.STREAM.PURGE.{audit}",
        ),
        (
            "delete a message from the audit trail",
            delete_audit_message,
            BY_PERMISSIONS,
            f"{api_}.STREAM.MSG.DELETE.{audit}",
        ),
        (
            "lift the audit trail's protection",
            update_audit_protection,
            BY_PERMISSIONS,
            f"{api_}.STREAM.UPDATE.{audit}",
        ),
        (
            "delete the audit stream",
            lambda: js.delete_stream(audit),
            BY_PERMISSIONS,
            f"{api_}.STREAM.DELETE.{audit}",
        ),
        ("snoop on raw traffic", _subscribe(nc, f"{s.prefix}.>"), BY_PERMISSIONS, f"{s.prefix}.>"),
        ("read the default inbox", _subscribe(nc, "_INBOX.>"), BY_PERMISSIONS, "_INBOX.>"),
    ]
    if operator:
        return rows
    dlq = topo.stream(DLQ).name
    for stream in (events, topo.stream(COMMANDS).name):  # skip an event, or a command
        rows.append(
            (
                f"delete a message of {stream}",
                _delete_first(m, js, stream),
                BY_PERMISSIONS,
                f"{api_}.STREAM.MSG.DELETE.{stream}",
            )
        )
    if identity == GATEWAY:  # the API's /dlq reads and deletes dead letters, one at a time
        rule_event = s.rule("attack", "fired")
        rows += [
            (
                "purge the DLQ",
                lambda: js.purge_stream(dlq),
                BY_PERMISSIONS,
                f"{api_}.STREAM.PURGE.{dlq}",
            ),
            (
                "read the DLQ directly",
                lambda: js.get_msg(dlq, seq=1, direct=True),
                BY_PERMISSIONS,
                f"{api_}.DIRECT.GET.{dlq}",
            ),
            (
                "consume the DLQ",
                lambda: js.add_consumer(dlq, api.ConsumerConfig(ack_policy=api.AckPolicy.NONE)),
                BY_PERMISSIONS,
                f"{api_}.CONSUMER.CREATE.{dlq}",
            ),
            (
                "replay a dead letter as a rule event (forge the engine's)",
                lambda: js.publish(rule_event, b"{}"),
                BY_PERMISSIONS,
                rule_event,
            ),
        ]
    if identity == GATEWAY:  # it follows one key of the engine's and reads two: no other one
        status = m.inst.topology.bucket("status")
        record = f"$KV.{status.bucket}.{EVENT_TYPES_KEY}"
        rules = f"$KV.{status.bucket}.{RULES_KEY}"
        engine = f"$KV.{status.bucket}.{ENGINE}"
        rows += [
            ("write the engine's event types", _publish(nc, record), BY_PERMISSIONS, record),
            ("follow the engine's other keys", _subscribe(nc, rules), BY_PERMISSIONS, rules),
            (
                "follow the whole status bucket",
                _subscribe(nc, f"$KV.{status.bucket}.>"),
                BY_PERMISSIONS,
                f"$KV.{status.bucket}.>",
            ),
            (
                "read the engine's other keys",
                lambda: js.get_msg(status.stream().name, subject=engine, direct=True),
                BY_PERMISSIONS,
                f"{api_}.DIRECT.GET.{status.stream().name}.{engine}",
            ),
        ]
    for other in IDENTITIES:  # a reply goes only to the inbox of a request it received
        if other != identity:
            inbox = f"_INBOX_{other}.unasked"
            rows.append((f"publish into {other}'s inbox", _publish(nc, inbox), BY_PERMISSIONS,
                         inbox))  # fmt: skip
    own = [c for c in topo.consumers if c.durable == identity]
    rows += [
        (
            "create a stream",
            lambda: js.add_stream(name=rogue, subjects=[f"{s.prefix}.rogue.>"]),
            BY_PERMISSIONS,
            f"{api_}.STREAM.CREATE.{rogue}",
        ),
        (
            "delete a stream",
            lambda: js.delete_stream(events),
            BY_PERMISSIONS,
            f"{api_}.STREAM.DELETE.{events}",
        ),
        (
            "create a consumer",
            lambda: js.add_consumer(events, api.ConsumerConfig(name="rogue", durable_name="rogue")),
            BY_PERMISSIONS,
            f"{api_}.CONSUMER.CREATE.{events}.rogue",
        ),
    ]
    for consumer in own:
        rows.append(
            (
                "delete its own consumer",
                lambda c=consumer: js.delete_consumer(c.stream, c.durable),  # type: ignore[misc]
                BY_PERMISSIONS,
                f"{api_}.CONSUMER.DELETE.{consumer.stream}.{consumer.durable}",
            )
        )
    for consumer in topo.consumers:
        if consumer.durable == identity:
            continue
        rows.append(
            (
                f"consume {consumer.durable}'s consumer",
                _fetch(js, consumer.stream, consumer.durable),
                BY_PERMISSIONS,
                f"{api_}.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}",
            )
        )
    assert identity in SERVICES
    return rows


def _delete_first(m: Matrix, js: JetStreamContext, stream: str) -> Act:
    """Delete the first message of ``stream`` (the operator puts one there first)."""
    subject = m.inst.subjects.ha_state("light.victim")
    if stream == m.inst.topology.stream(COMMANDS).name:
        subject = m.inst.subjects.command("light", "victim")

    async def delete() -> None:
        stored = await m.js(OPERATOR).publish(subject, b"{}")
        await js.delete_msg(stream, stored.seq)

    return delete


def _fetch(js: JetStreamContext, stream: str, durable: str) -> Act:
    async def fetch() -> None:
        sub = await js.pull_subscribe_bind(durable, stream=stream)
        try:
            await sub.fetch(1, timeout=5)
        finally:
            await sub.unsubscribe()

    return fetch
