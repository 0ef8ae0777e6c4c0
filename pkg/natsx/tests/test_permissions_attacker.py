"""What an attacker holding one identity's credentials tries against the others' state.

How the list was drawn up: not from the permission table, but from each service's job
(DESIGN.md, "The pieces"; README) we wrote down, in ``KEYS``, ``DURABLES`` and the AUDIT
and DLQ sections below, the state each identity owns and whose job needs to read it:

- gateway: the command ledger (idempotency bucket, ``cmd.<id>``: forging "done" skips a
  command, deleting it runs one again), the HA projection (the engine reads it to evaluate
  rules), its status record, and the COMMANDS durable ``gateway``.
- engine: its timers, its status records (``engine``; ``engine.rules`` and
  ``engine.trace.<rule>``, which the gateway's API reads for ``/rules``; and
  ``engine.event_types``, which the gateway reads to know what to forward), and the EVENTS
  durable ``engine``.
- audit_sink: its status records (``audit_sink``, ``audit_sink.head``, the head that
  ``rubyctl audit verify`` trusts) and the AUDIT durable, which it creates itself; and the
  audit API (``<p>.api.audit.<verb>``): it alone answers it, and only the gateway (the HTTP
  API's ``/audit``) asks it (ADR-0036).
- operator: applies the topology (every stream, every consumer but the sink's), reads
  everything to inspect it, replays dead letters. Nobody in day-to-day operation may change
  AUDIT's configuration or touch the sink's durable.

Then, for every identity and every piece of state it does not own, every way the NATS API
offers to read, write, delete or purge it: a KV get (direct by subject, direct by request
body, non-direct), a put, delete and purge marker, an API purge of the key, an API message
delete; for every durable not its own (the operator: the sink's): an update through both
create subjects and without the filter in the subject, the legacy create, a delete, a pause,
a pull, an ack, its info, an ephemeral consumer on its stream; for AUDIT, as everyone:
configuration updates (subjects, max_msgs with discard old, max_age, deny flags off,
rollups allowed), taking its subjects into another stream, a create over it, a purge, a
message delete, its deletion, rollup and per-message TTL publishes; for the DLQ, as every
service: reading, consuming, purging, deleting and acking dead letters, and replaying into a
family it does not produce (the gateway reads and deletes dead letters one at a time for the
API's ``/dlq``, ADR-0038: it still may not purge, consume, read directly or ack them); for the
audit API: asking it (all but the gateway), answering it or listening to every request (all
but the sink), a reply into an inbox that sent no request, and, as the sink, reading another
stream's messages. Only what a job needs is expected to be allowed (the readers' reads are
exercised by ``test_permissions_matrix.py``); everything here must be refused.
Afterwards AUDIT, the sink's durable and every key are checked unchanged. The matrix prints
its counts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio
from nats.js import api

from ruby_ctl.probe import BY_PERMISSIONS, BY_STREAM, REFUSED, Act, Matrix, watching_violations
from ruby_ctl.testing import Installation
from ruby_natsx.apply import Action, apply_consumer, apply_topology
from ruby_natsx.permissions import IDENTITIES, OPERATOR
from ruby_natsx.topology import (
    AUDIT,
    AUDIT_SINK,
    DLQ,
    ENGINE,
    EVENT_TYPES_KEY,
    EVENTS,
    GATEWAY,
    IDEMPOTENCY,
    PROJECTION,
    STATUS,
    TIMERS,
    Discard,
)

API = "$JS.API"


@dataclass(frozen=True)
class Key:
    """One KV key, its owner (the only writer), and who else's job reads it."""

    bucket: str
    key: str
    owner: str
    readers: frozenset[str]


KEYS = (
    Key(IDEMPOTENCY, "cmd.attack-1", GATEWAY, frozenset({OPERATOR})),
    Key(PROJECTION, "light.attack", GATEWAY, frozenset({ENGINE, OPERATOR})),
    Key(TIMERS, "attack.rule.timer", ENGINE, frozenset({OPERATOR})),
    Key(STATUS, GATEWAY, GATEWAY, frozenset({OPERATOR})),
    Key(STATUS, ENGINE, ENGINE, frozenset({OPERATOR})),
    Key(STATUS, EVENT_TYPES_KEY, ENGINE, frozenset({GATEWAY, OPERATOR})),
    Key(STATUS, f"{ENGINE}.rules", ENGINE, frozenset({GATEWAY, OPERATOR})),  # the API's /rules
    Key(STATUS, f"{ENGINE}.trace.attack", ENGINE, frozenset({GATEWAY, OPERATOR})),
    Key(STATUS, AUDIT_SINK, AUDIT_SINK, frozenset({OPERATOR})),
    Key(STATUS, f"{AUDIT_SINK}.head", AUDIT_SINK, frozenset({OPERATOR})),
)

DURABLES = {GATEWAY: GATEWAY, ENGINE: ENGINE, AUDIT_SINK: AUDIT_SINK}
"""durable -> the service that owns it; the operator administers all but the sink's."""

Row = tuple[str, Act, str, str]


@pytest_asyncio.fixture
async def matrix(installation: Installation) -> AsyncIterator[Matrix]:
    with watching_violations() as violations:
        clients = {i: await installation.connect(i, name=f"attacker-{i}") for i in IDENTITIES}
        yield Matrix(installation, violations, clients)
        for client in clients.values():
            await client.close()


async def test_no_identity_can_touch_what_its_job_does_not_own(
    matrix: Matrix, capsys: pytest.CaptureFixture[str]
) -> None:
    m = matrix
    topo, s = m.inst.topology, m.inst.subjects
    audit = topo.stream(AUDIT).name
    values = {}
    for k in KEYS:  # each owner writes its own keys: its job
        subject = _kv_subject(m, k)
        values[subject] = f"{k.owner}'s {k.key}".encode()
        await m.js(k.owner).publish(subject, values[subject])
    await m.js(GATEWAY).publish(s.dlq(topo.stream("COMMANDS").name, GATEWAY), b"{}")
    await m.js(OPERATOR).publish(s.audit(OPERATOR, "attack_start"), b"{}")
    before = (await m.js(OPERATOR).stream_info(audit)).state

    for identity in IDENTITIES:
        rows = [*_kv_attacks(m, identity), *_durable_attacks(m, identity)]
        rows += _audit_attacks(m, identity)
        if identity != OPERATOR:
            rows += _dlq_attacks(m, identity)
        if identity in (ENGINE, AUDIT_SINK):  # only the gateway's API records webhook calls
            forged = s.webhook("attack")
            act = _call(m.js(identity).publish, forged, b"{}")
            rows.append(("forge a webhook call", act, BY_PERMISSIONS, forged))
        rows += _api_attacks(m, identity)
        for what, act, outcome, subject in rows:
            await m.expect(identity, what, act, outcome, subject)

    with capsys.disabled():
        print("\n" + m.counts("attacker matrix"))
    assert not m.wrong, "\n".join(m.wrong)
    assert m.ok[REFUSED] > 300

    # Nothing moved: AUDIT as declared and whole, the sink's durable as declared, every key.
    op = m.js(OPERATOR)
    changes = await apply_topology(op, topo, operator=True)
    assert {c.action for c in changes} == {Action.UNCHANGED}, changes
    after = (await op.stream_info(audit)).state
    assert after.first_seq == before.first_seq
    assert after.messages >= before.messages
    sink = await apply_consumer(m.js(AUDIT_SINK), topo.consumer(AUDIT_SINK))
    assert sink.action is Action.UNCHANGED, sink
    for k in KEYS:
        subject = _kv_subject(m, k)
        stored = await op.get_msg(topo.bucket(k.bucket).stream().name, subject=subject)
        assert stored.data == values[subject], subject


def _kv_subject(m: Matrix, k: Key) -> str:
    return f"$KV.{m.inst.topology.bucket(k.bucket).bucket}.{k.key}"


def _kv_attacks(m: Matrix, identity: str) -> list[Row]:
    js, nc, topo = m.js(identity), m.nc[identity], m.inst.topology
    rows: list[Row] = []
    for k in KEYS:
        if k.owner == identity:
            continue
        stream, subject = topo.bucket(k.bucket).stream().name, _kv_subject(m, k)
        name = f"{k.owner}'s {k.bucket} key {k.key}"
        if identity not in k.readers:
            body = json.dumps({"last_by_subj": subject}).encode()
            rows += [
                (
                    f"read {name}",
                    _call(js.get_msg, stream, subject=subject, direct=True),
                    BY_PERMISSIONS,
                    f"{API}.DIRECT.GET.{stream}.{subject}",
                ),
                (
                    f"read {name} by request body",
                    _call(nc.request, f"{API}.DIRECT.GET.{stream}", body, timeout=5),
                    BY_PERMISSIONS,
                    f"{API}.DIRECT.GET.{stream}",
                ),
                (
                    f"read {name} (non-direct)",
                    _call(js.get_msg, stream, subject=subject),
                    BY_PERMISSIONS,
                    f"{API}.STREAM.MSG.GET.{stream}",
                ),
            ]
        markers = {
            "forge": None,
            "delete": {"KV-Operation": "DEL"},
            "purge": {"KV-Operation": "PURGE", "Nats-Rollup": "sub"},
        }
        for verb, headers in markers.items():
            act = _call(js.publish, subject, b"forged", headers=headers)
            rows.append((f"{verb} {name}", act, BY_PERMISSIONS, subject))
        rows += [
            (
                f"purge {name} through the API",
                _call(js.purge_stream, stream, subject=subject),
                BY_PERMISSIONS,
                f"{API}.STREAM.PURGE.{stream}",
            ),
            (
                f"delete {name} through the API",
                _delete_last(m, identity, stream, subject),
                BY_STREAM if identity == OPERATOR else BY_PERMISSIONS,
                f"{API}.STREAM.MSG.DELETE.{stream}",
            ),
        ]
    return rows


def _durable_attacks(m: Matrix, identity: str) -> list[Row]:
    js, nc, topo = m.js(identity), m.nc[identity], m.inst.topology
    rows: list[Row] = []
    for spec in topo.consumers:
        owner = DURABLES[spec.durable]
        if identity == OPERATOR and owner != AUDIT_SINK:
            continue  # the operator's job: it applies these
        st, d = spec.stream, spec.durable
        name = f"{owner}'s durable {st}/{d}"
        only = spec.filter_subjects[0]
        # nats-py names the filter in the create subject only when there is one.
        create = f"{API}.CONSUMER.CREATE.{st}.{d}"
        filtered = f"{create}.{only}" if len(spec.filter_subjects) == 1 else create
        starved = dataclasses.replace(spec, max_deliver=1, ack_wait=0.5).to_config()
        narrowed = dataclasses.replace(spec, filter_subjects=(f"{only}.nothing",)).to_config()
        unfiltered = spec.to_config().evolve(filter_subject=None, filter_subjects=[only])
        pause = json.dumps({"pause_until": "2999-01-01T00:00:00Z"}).encode()
        ack = f"$JS.ACK.{st}.{d}.1.1.1.1764800000000000000.0"
        ephemeral = api.ConsumerConfig(ack_policy=api.AckPolicy.NONE)
        if owner != identity:
            rows += [
                (f"starve {name}", _call(js.add_consumer, st, starved), BY_PERMISSIONS,
                 filtered),
                (f"narrow {name}'s filter", _call(js.add_consumer, st, narrowed),
                 BY_PERMISSIONS, f"{API}.CONSUMER.CREATE.{st}.{d}.{only}.nothing"),
                (f"update {name} by the legacy subject",
                 _call(js.add_consumer, st, starved.evolve(name=None)), BY_PERMISSIONS,
                 f"{API}.CONSUMER.DURABLE.CREATE.{st}.{d}"),
                (f"delete {name}", _call(js.delete_consumer, st, d), BY_PERMISSIONS,
                 f"{API}.CONSUMER.DELETE.{st}.{d}"),
                (f"pause {name}",
                 _call(nc.request, f"{API}.CONSUMER.PAUSE.{st}.{d}", pause, timeout=5),
                 BY_PERMISSIONS, f"{API}.CONSUMER.PAUSE.{st}.{d}"),
                (f"pull from {name}", _fetch(m, identity, st, d), BY_PERMISSIONS,
                 f"{API}.CONSUMER.MSG.NEXT.{st}.{d}"),
                (f"ack for {name}", _call(nc.publish, ack, b"+ACK"), BY_PERMISSIONS, ack),
                (f"add an ephemeral consumer on {st}", _call(js.add_consumer, st, ephemeral),
                 BY_PERMISSIONS, f"{API}.CONSUMER.CREATE.{st}"),
            ]  # fmt: skip
            if identity != OPERATOR:  # the operator's job reads every consumer's state
                act = _call(js.consumer_info, st, d)
                rows.append((f"read {name}'s state", act, BY_PERMISSIONS,
                             f"{API}.CONSUMER.INFO.{st}.{d}"))  # fmt: skip
        if spec.self_created:  # even its owner may create it only with its declared filter
            verb = "re-filter" if owner == identity else "replace"
            rows.append((f"{verb} {name} without the filter in the subject",
                         _call(js.add_consumer, st, unfiltered), BY_PERMISSIONS,
                         f"{API}.CONSUMER.CREATE.{st}.{d}"))  # fmt: skip
    return rows


def _audit_attacks(m: Matrix, identity: str) -> list[Row]:
    js, topo, s = m.js(identity), m.inst.topology, m.inst.subjects
    spec = topo.stream(AUDIT)
    audit = spec.name
    update = f"{API}.STREAM.UPDATE.{audit}"
    configs: dict[str, dict[str, object]] = {
        "move AUDIT's subjects away": {"subjects": [f"{s.prefix}.audit.elsewhere.>"]},
        "keep one audit record (max_msgs=1, discard old)": {
            "max_msgs": 1,
            "discard": api.DiscardPolicy.OLD,
        },
        "expire the audit trail after 1 s": {"max_age": 1.0, "duplicate_window": 1.0},
        "lift AUDIT's deny flags": {"deny_delete": False, "deny_purge": False},
        "allow rollups on AUDIT": {"allow_rollup_hdrs": True},
    }
    rows: list[Row] = [
        (what, _call(js.update_stream, spec.to_config().evolve(**change)), BY_PERMISSIONS, update)
        for what, change in configs.items()
    ]
    own = s.audit(identity, "attack")
    events = topo.stream(EVENTS)
    widened = events.to_config().evolve(subjects=[s.events_all, s.audit_all])
    taken = [s.audit(GATEWAY, "attack")]
    rogue = api.StreamConfig(name=f"{s.prefix.upper()}_ROGUE", subjects=taken)
    by_stream = BY_STREAM if identity == OPERATOR else BY_PERMISSIONS
    rows += [
        ("take AUDIT's subjects into EVENTS", _call(js.update_stream, widened), by_stream,
         f"{API}.STREAM.UPDATE.{events.name}"),
        ("take some of AUDIT's subjects into a new stream", _call(js.add_stream, rogue),
         by_stream, f"{API}.STREAM.CREATE.{rogue.name}"),
    ]  # fmt: skip
    recreated = spec.to_config().evolve(max_msgs=1, discard=api.DiscardPolicy.OLD)
    rows += [
        ("create AUDIT over the existing one, keeping one record",
         _call(js.add_stream, recreated),
         BY_STREAM if identity == OPERATOR else BY_PERMISSIONS, f"{API}.STREAM.CREATE.{audit}"),
        ("purge AUDIT", _call(js.purge_stream, audit), BY_PERMISSIONS,
         f"{API}.STREAM.PURGE.{audit}"),
        ("delete an audit record", _call(js.delete_msg, audit, 1), BY_PERMISSIONS,
         f"{API}.STREAM.MSG.DELETE.{audit}"),
        ("delete AUDIT", _call(js.delete_stream, audit), BY_PERMISSIONS,
         f"{API}.STREAM.DELETE.{audit}"),
        ("roll AUDIT up to one record",
         _call(js.publish, own, b"{}", headers={"Nats-Rollup": "all"}), BY_STREAM, own),
        ("roll its audit subject up",
         _call(js.publish, own, b"{}", headers={"Nats-Rollup": "sub"}), BY_STREAM, own),
        ("publish an audit record that expires",
         _call(js.publish, own, b"{}", headers={"Nats-TTL": "1s"}), BY_STREAM, own),
    ]  # fmt: skip
    assert spec.discard is Discard.NEW  # what "discard old" above would change
    return rows


def _dlq_attacks(m: Matrix, identity: str) -> list[Row]:
    js, nc, topo, s = m.js(identity), m.nc[identity], m.inst.topology, m.inst.subjects
    dlq = topo.stream(DLQ).name
    replays = {
        GATEWAY: s.rules_all,
        ENGINE: s.ha_all,
        AUDIT_SINK: s.events_all,
    }  # a family the service's job does not produce
    target = replays[identity].replace(">", "light.attack")
    ack = f"$JS.ACK.{dlq}.op.1.1.1.1764800000000000000.0"
    ephemeral = api.ConsumerConfig(ack_policy=api.AckPolicy.NONE)
    triage: list[Row] = [  # the gateway's job, for the API's /dlq (test_permissions_matrix)
        ("read a dead letter", _call(js.get_msg, dlq, seq=1), BY_PERMISSIONS,
         f"{API}.STREAM.MSG.GET.{dlq}"),
        ("delete a dead letter", _call(js.delete_msg, dlq, 1), BY_PERMISSIONS,
         f"{API}.STREAM.MSG.DELETE.{dlq}"),
    ]  # fmt: skip
    return [
        *(triage if identity != GATEWAY else []),
        ("read a dead letter directly", _call(js.get_msg, dlq, seq=1, direct=True),
         BY_PERMISSIONS, f"{API}.DIRECT.GET.{dlq}"),
        ("consume the DLQ", _call(js.add_consumer, dlq, ephemeral), BY_PERMISSIONS,
         f"{API}.CONSUMER.CREATE.{dlq}"),
        ("purge the DLQ", _call(js.purge_stream, dlq), BY_PERMISSIONS,
         f"{API}.STREAM.PURGE.{dlq}"),
        ("ack a dead letter", _call(nc.publish, ack, b"+ACK"), BY_PERMISSIONS, ack),
        (f"replay a dead letter into {target}", _call(js.publish, target, b"{}"),
         BY_PERMISSIONS, target),
    ]  # fmt: skip


def _api_attacks(m: Matrix, identity: str) -> list[Row]:
    """The audit API: the trail is read through the sink only by the gateway's API."""
    nc, s, topo = m.nc[identity], m.inst.subjects, m.inst.topology
    query = s.api("audit", "query")
    rows: list[Row] = []
    if identity != GATEWAY:
        rows.append(("ask the audit sink for the trail", _call(nc.request, query, b"{}",
                     timeout=5), BY_PERMISSIONS, query))  # fmt: skip
    if identity != AUDIT_SINK:
        rows.append(("answer audit requests in the sink's place",
                     _call(nc.subscribe, query), BY_PERMISSIONS, query))  # fmt: skip
    everything = f"{s.prefix}.api.>"
    rows.append(("listen to every request", _call(nc.subscribe, everything), BY_PERMISSIONS,
                 everything))  # fmt: skip
    if identity == AUDIT_SINK:
        forged = f"_INBOX_{GATEWAY}.forged"
        commands = f"{API}.STREAM.MSG.GET.{topo.stream('COMMANDS').name}"
        rows += [
            ("reply into an inbox that asked nothing", _call(nc.publish, forged, b"{}"),
             BY_PERMISSIONS, forged),
            ("read a command", _call(m.js(identity).get_msg, topo.stream("COMMANDS").name,
             seq=1), BY_PERMISSIONS, commands),
        ]  # fmt: skip
    return rows


def _call(fn: Callable[..., Awaitable[object]], *args: object, **kwargs: object) -> Act:
    """The attempt ``fn(*args, **kwargs)``, its arguments bound now."""
    return lambda: fn(*args, **kwargs)


def _delete_last(m: Matrix, identity: str, stream: str, subject: str) -> Act:
    async def delete() -> None:
        seq = (await m.js(OPERATOR).get_msg(stream, subject=subject)).seq
        assert seq is not None
        await m.js(identity).delete_msg(stream, seq)

    return delete


def _fetch(m: Matrix, identity: str, stream: str, durable: str) -> Act:
    async def fetch() -> None:
        sub = await m.js(identity).pull_subscribe_bind(durable, stream=stream)
        try:
            await sub.fetch(1, timeout=5)
        finally:
            await sub.unsubscribe()

    return fetch
