"""The permission table says what DESIGN.md promises (promise 8), and renders faithfully.

These tests read the table without a server; ``test_permissions_matrix.py`` proves that a real
nats-server enforces exactly what it says.
"""

from __future__ import annotations

import re

import pytest

from ruby_natsx.credentials import new_user_seed, user_public_key
from ruby_natsx.permissions import (
    IDENTITIES,
    NEEDS,
    OPERATOR,
    SERVICES,
    Needs,
    Permissions,
    StreamAccess,
    inbox_prefix,
    permissions,
    permissions_of,
    render_authorization,
    subject_matches,
)
from ruby_natsx.permissions import _service as service_permissions
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import (
    AUDIT,
    AUDIT_SINK,
    COMMANDS,
    DLQ,
    ENGINE,
    EVENT_TYPES_KEY,
    EVENTS,
    GATEWAY,
    topology,
)

S = Subjects("ruby")
TOPO = topology(S)
DLQ_NAME = TOPO.stream(DLQ).name
READ_AND_PULL_CALLS = tuple(
    f"$JS.API.{call}."
    for call in (
        "CONSUMER.MSG.NEXT",
        "CONSUMER.INFO",
        "STREAM.INFO",
        "STREAM.MSG.GET",
        "DIRECT.GET",
    )
)
ADMIN_CALLS = ("CREATE", "UPDATE", "DELETE", "PURGE", "LEADER", "SNAPSHOT", "RESTORE", "REMOVE")


def _of(identity: str) -> Permissions:
    return permissions_of(S, identity)


def test_every_identity_has_exactly_one_entry_in_order() -> None:
    assert [p.identity for p in permissions(S)] == list(IDENTITIES)
    assert set(NEEDS) == set(SERVICES)
    with pytest.raises(KeyError, match="'stranger'"):
        permissions_of(S, "stranger")


@pytest.mark.parametrize("identity", SERVICES)
def test_services_never_administer_jetstream(identity: str) -> None:
    own = TOPO.consumer(identity)
    for grant in _of(identity).publish:
        assert not grant.subject.startswith("$JS.API.>")
        if own.self_created and grant.subject == (
            f"$JS.API.CONSUMER.CREATE.{own.stream}.{own.durable}.{own.filter_subjects[0]}"
        ):
            continue  # the audit sink creates its own durable, with its filter in the subject
        if identity == GATEWAY and grant.subject == f"$JS.API.STREAM.MSG.DELETE.{DLQ_NAME}":
            continue  # the API's DELETE /dlq/{seq}: one dead letter at a time (ADR-0038)
        if grant.subject.startswith("$JS.API."):
            assert grant.subject.startswith(READ_AND_PULL_CALLS), grant
            assert not any(call in grant.subject for call in ADMIN_CALLS), grant
        assert "*" not in grant.subject, "services get no single-token wildcards"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_each_identity_reads_only_its_own_inbox(identity: str) -> None:
    grant, *followed = _of(identity).subscribe
    assert grant.subject == f"_INBOX_{identity}.>"
    assert [g.subject for g in followed] == {
        GATEWAY: [  # the last: the API's event stream hears what EVENTS stores
            "$KV.ruby_api_tokens.>",
            f"$KV.ruby_status.{EVENT_TYPES_KEY}",
            "ruby.evt.>",
        ],
        AUDIT_SINK: [S.api("audit", verb) for verb in ("query", "why", "verify")],
    }.get(identity, [])
    assert inbox_prefix(identity) == f"_INBOX_{identity}"
    for other in IDENTITIES:
        if other != identity:
            assert not _of(identity).may_subscribe(f"_INBOX_{other}.x")
    assert not _of(identity).may_subscribe("_INBOX.x")
    assert not _of(identity).may_subscribe(">")


@pytest.mark.parametrize(
    ("identity", "stream", "durable"),
    [(GATEWAY, COMMANDS, GATEWAY), (ENGINE, EVENTS, ENGINE), (AUDIT_SINK, AUDIT, AUDIT_SINK)],
)
def test_a_service_pulls_acks_and_dead_letters_only_its_own_consumer(
    identity: str, stream: str, durable: str
) -> None:
    name = TOPO.stream(stream).name
    mine = _of(identity)
    assert mine.may_publish(f"$JS.API.CONSUMER.MSG.NEXT.{name}.{durable}")
    assert mine.may_publish(f"$JS.ACK.{name}.{durable}.1.2.3.4.0")
    assert mine.may_publish(S.dlq(name, durable))
    for consumer in TOPO.consumers:
        if consumer.durable != durable:
            assert not mine.may_publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}"
            )
            assert not mine.may_publish(f"$JS.ACK.{consumer.stream}.{consumer.durable}.1")
            assert not mine.may_publish(S.dlq(consumer.stream, consumer.durable))


def test_each_service_produces_only_its_own_subjects() -> None:
    samples = {
        GATEWAY: [
            S.ha_state("light.porch"),
            S.ha_event("call_service"),
            S.cmd_outcome("ok", "light", "turn_on"),
            S.webhook("garage-door"),  # the API's webhooks
        ],
        ENGINE: [S.rule("porch", "fired")],
        AUDIT_SINK: [],
    }
    # Commands come from the engine's rules and from the gateway's API (control tokens).
    for identity in (GATEWAY, ENGINE):
        assert _of(identity).may_publish(S.command("light", "turn_on")), identity
    assert not _of(AUDIT_SINK).may_publish(S.command("light", "turn_on"))
    for identity, own in samples.items():
        for subject in [*own, S.audit(identity, "x")]:
            assert _of(identity).may_publish(subject), (identity, subject)
        for other, theirs in samples.items():
            if other != identity:
                for subject in [*theirs, S.audit(other, "x")]:
                    assert not _of(identity).may_publish(subject), (identity, subject)


def test_only_the_gateway_publishes_webhooks_and_the_engine_receives_them() -> None:
    gateway = _of(GATEWAY)
    assert gateway.may_publish(S.webhook("garage-door"))
    # The family is the webhooks', not every API event: nothing else below evt.api.
    assert not gateway.may_publish(f"{S.prefix}.evt.api.other.x")
    for identity in (ENGINE, AUDIT_SINK):  # the engine consumes them; it may not forge one
        assert not _of(identity).may_publish(S.webhook("garage-door")), identity
    engine = TOPO.consumer(ENGINE)
    assert any(subject_matches(f, S.webhook("garage-door")) for f in engine.filter_subjects)
    events = TOPO.stream(EVENTS)
    assert any(subject_matches(f, S.webhook("garage-door")) for f in events.subjects)


def test_kv_access_is_what_each_service_needs() -> None:
    def writes(identity: str, bucket: str, key: str = "k") -> bool:
        return _of(identity).may_publish(f"$KV.{S.prefix}_{bucket}.{key}")

    def reads(identity: str, bucket: str) -> bool:
        return _of(identity).may_publish(f"$JS.API.DIRECT.GET.KV_{S.prefix}_{bucket}.$KV.x.k")

    assert writes(GATEWAY, "projection")
    assert reads(GATEWAY, "projection")
    assert reads(ENGINE, "projection")
    assert not writes(ENGINE, "projection")
    assert writes(ENGINE, "timers")
    assert reads(ENGINE, "timers")
    assert not writes(GATEWAY, "timers")
    assert not reads(GATEWAY, "timers")
    assert writes(GATEWAY, "idempotency")
    assert reads(GATEWAY, "idempotency")
    for identity in (ENGINE, AUDIT_SINK, OPERATOR):  # the ledger is the gateway's alone
        assert not writes(identity, "idempotency", "cmd.c1"), identity
    for identity in (ENGINE, AUDIT_SINK):
        assert not reads(identity, "idempotency"), identity
    for identity in SERVICES:
        assert writes(identity, "status", identity)
        assert not reads(identity, "status")
        for other in SERVICES:
            if other != identity:
                assert not writes(identity, "status", other)
    assert not any(writes(AUDIT_SINK, b) for b in ("projection", "timers"))
    assert not any(writes(OPERATOR, b) for b in ("projection", "idempotency", "timers", "status"))


def test_only_the_gateway_follows_the_engines_event_types_and_only_that_key() -> None:
    record = f"$KV.ruby_status.{EVENT_TYPES_KEY}"
    read = f"$JS.API.DIRECT.GET.KV_ruby_status.{record}"
    gateway = _of(GATEWAY)
    assert gateway.may_subscribe(record)
    assert gateway.may_publish(read)
    assert not gateway.may_publish(record)  # it follows the record; only the engine writes it
    assert not gateway.may_subscribe("$KV.ruby_status.engine.rules")
    assert not gateway.may_subscribe("$KV.ruby_status.>")
    assert not gateway.may_subscribe("$KV.ruby_status.engine.>")
    assert not gateway.may_publish("$JS.API.DIRECT.GET.KV_ruby_status.$KV.ruby_status.engine")
    # It reads (never follows, never writes) the rules and their traces, for the API's /rules.
    for key in ("engine.rules", "engine.trace.porch"):
        assert gateway.may_publish(f"$JS.API.DIRECT.GET.KV_ruby_status.$KV.ruby_status.{key}")
        assert not gateway.may_publish(f"$KV.ruby_status.{key}")
    assert not gateway.may_publish("$JS.API.DIRECT.GET.KV_ruby_status.$KV.ruby_status.engine.x")
    assert not gateway.may_publish("$JS.API.DIRECT.GET.KV_ruby_status")  # by sequence: any key
    assert _of(ENGINE).may_publish(record)
    for identity in (ENGINE, AUDIT_SINK, OPERATOR):
        assert not _of(identity).may_subscribe(record), identity


def test_the_gateway_reads_and_deletes_dead_letters_one_by_one_and_nothing_more() -> None:
    """The API's /dlq (ADR-0038): the DLQ's state, its messages by sequence, a delete of one;
    never a purge, a consumer, a direct get, or a delete from another stream."""
    gateway = _of(GATEWAY)
    api = "$JS.API"
    for call in ("STREAM.INFO", "STREAM.MSG.GET", "STREAM.MSG.DELETE"):
        assert gateway.may_publish(f"{api}.{call}.{DLQ_NAME}"), call
    refused = [
        f"{api}.STREAM.PURGE.{DLQ_NAME}",
        f"{api}.STREAM.DELETE.{DLQ_NAME}",
        f"{api}.STREAM.UPDATE.{DLQ_NAME}",
        f"{api}.DIRECT.GET.{DLQ_NAME}",
        f"{api}.CONSUMER.CREATE.{DLQ_NAME}",
        f"{api}.CONSUMER.CREATE.{DLQ_NAME}.x.{S.dlq_all}",
        f"$JS.ACK.{DLQ_NAME}.x.1.1.1.1.0",
    ]
    refused += [
        f"{api}.STREAM.MSG.DELETE.{spec.name}" for spec in TOPO.streams if spec.logical != DLQ
    ]
    refused += [f"{api}.STREAM.MSG.DELETE.{b.stream().name}" for b in TOPO.buckets]
    for subject in refused:
        assert not gateway.may_publish(subject), subject
    for identity in (ENGINE, AUDIT_SINK):  # theirs is only to dead-letter into it
        for call in ("STREAM.INFO", "STREAM.MSG.GET", "STREAM.MSG.DELETE"):
            assert not _of(identity).may_publish(f"{api}.{call}.{DLQ_NAME}"), (identity, call)
    # It replays only what it produces: never a rule event, never another's audit record.
    assert not gateway.may_publish(S.rule("porch", "fired"))
    assert not gateway.may_publish(S.audit(ENGINE, "rule_loaded"))
    assert gateway.may_publish(S.command("light", "turn_on"))


def test_no_table_may_grant_deleting_from_a_locked_stream() -> None:
    with pytest.raises(ValueError, match="RUBY_AUDIT is locked"):
        service_permissions(TOPO, GATEWAY, Needs(streams=((AUDIT, StreamAccess.TRIAGE),)))
    read = service_permissions(TOPO, GATEWAY, Needs(streams=((AUDIT, StreamAccess.READ),)))
    assert not read.may_publish(f"$JS.API.STREAM.MSG.DELETE.{TOPO.stream(AUDIT).name}")
    assert read.may_publish(f"$JS.API.STREAM.MSG.GET.{TOPO.stream(AUDIT).name}")


def test_the_operator_administers_but_cannot_delete_the_audit_stream() -> None:
    op = _of(OPERATOR)
    audit = TOPO.stream(AUDIT).name
    assert op.may_publish(f"$JS.API.STREAM.CREATE.{TOPO.stream(EVENTS).name}")
    assert op.may_publish(f"$JS.API.STREAM.DELETE.{TOPO.stream(EVENTS).name}")
    assert not op.may_publish(f"$JS.API.STREAM.DELETE.{audit}")
    assert op.may_publish(S.ha_state("light.porch"))  # replay
    assert not op.may_publish(S.dlq("RUBY_EVENTS", "engine"))
    assert not op.may_publish("$KV.ruby_projection.light")


def test_the_operator_may_create_audit_but_never_change_it_nor_touch_its_consumer() -> None:
    audit, sink = TOPO.stream(AUDIT).name, TOPO.consumer(AUDIT_SINK)
    locked = [
        f"$JS.API.STREAM.{verb}.{audit}"
        for verb in ("UPDATE", "DELETE", "PURGE", "MSG.DELETE", "RESTORE")
    ] + [
        f"$JS.API.CONSUMER.{verb}.{audit}.{sink.durable}"
        for verb in ("CREATE", "DURABLE.CREATE", "DELETE", "MSG.NEXT", "PAUSE", "RESET")
    ]
    locked += [f"$JS.API.CONSUMER.CREATE.{audit}", f"$JS.API.CONSUMER.CREATE.{audit}.x.ruby.>"]
    op, glass = _of(OPERATOR), permissions(S, break_glass=True)[-1]
    assert glass.identity == OPERATOR
    for subject in locked:
        assert not op.may_publish(subject), subject
        assert glass.may_publish(subject) is subject.startswith("$JS.API.STREAM.UPDATE."), subject
    for subject in (f"$JS.API.STREAM.CREATE.{audit}", f"$JS.API.STREAM.INFO.{audit}"):
        assert op.may_publish(subject), subject  # a fresh install creates it; reading is fine
    for bucket in TOPO.buckets:  # a purged ledger key would run a command again
        assert not op.may_publish(f"$JS.API.STREAM.PURGE.{bucket.stream().name}")


def test_only_the_gateway_asks_the_audit_api_and_only_the_sink_answers_it() -> None:
    requests = [S.api("audit", verb) for verb in ("query", "why", "verify")]
    for identity in IDENTITIES:
        perms = _of(identity)
        for request in requests:
            assert perms.may_publish(request) is (identity == GATEWAY), (identity, request)
            assert perms.may_subscribe(request) is (identity == AUDIT_SINK), (identity, request)
        assert perms.may_reply is (identity == AUDIT_SINK), identity
        assert not perms.may_publish("ruby.api.audit.>")
        assert not perms.may_subscribe("ruby.api.audit.>")
        assert not perms.may_subscribe("ruby.api.>")
    sink = _of(AUDIT_SINK)
    assert sink.responses is not None
    assert sink.responses.max == 1
    # It replies to a request's inbox only through allow_responses: never to an inbox at will.
    for other in IDENTITIES:
        assert not sink.may_publish(f"_INBOX_{other}.reply")
    # It reads single EVENTS messages (the trigger of a rule), by no consumer, and nothing else.
    events = TOPO.stream(EVENTS).name
    assert sink.may_publish(f"$JS.API.STREAM.MSG.GET.{events}")
    assert not sink.may_publish(f"$JS.API.DIRECT.GET.{events}")
    assert not sink.may_publish(f"$JS.API.CONSUMER.CREATE.{events}")
    assert not sink.may_publish(f"$JS.API.STREAM.MSG.GET.{TOPO.stream(COMMANDS).name}")


def test_rendering_gives_allow_responses_to_the_answering_identity_alone() -> None:
    keys = {identity: user_public_key(new_user_seed()) for identity in IDENTITIES}
    text = render_authorization(permissions(S), keys, installation="ruby")
    blocks = dict(b.split("\n", 1) for b in text.split("    # ")[1:])
    assert [i for i, b in blocks.items() if "allow_responses" in b] == [AUDIT_SINK]
    assert 'allow_responses: {max: 1, expires: "1m"}' in blocks[AUDIT_SINK]


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        (">", "a", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
    ],
)
def test_subject_matching_follows_nats(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_rendering_lists_every_grant_under_its_identity_key_and_no_seed() -> None:
    seeds = {identity: new_user_seed() for identity in IDENTITIES}
    keys = {identity: user_public_key(seed) for identity, seed in seeds.items()}
    text = render_authorization(permissions(S), keys, installation="ruby")

    blocks = text.split("    # ")[1:]
    assert [b.split("\n", 1)[0] for b in blocks] == list(IDENTITIES)
    for block, perms in zip(blocks, permissions(S), strict=True):
        assert f'nkey: "{keys[perms.identity]}"' in block
        quoted = re.findall(r'"([^"]+)"  #', block)
        expected = [g.subject for g in (*perms.publish, *perms.deny_publish, *perms.subscribe)]
        assert quoted == expected
    for seed in seeds.values():
        assert seed not in text
    assert re.search(r"S[UAONCX][A-Z2-7]{55}", text) is None


@pytest.mark.parametrize("bad", [None, "not-a-key", "S" + "U" * 55])
def test_rendering_refuses_anything_but_a_public_user_key(bad: str | None) -> None:
    keys = {identity: user_public_key(new_user_seed()) for identity in IDENTITIES}
    if bad is None:
        del keys[ENGINE]
    else:
        keys[ENGINE] = bad
    with pytest.raises(ValueError, match="'engine'"):
        render_authorization(permissions(S), keys, installation="ruby")


def test_the_table_follows_the_prefix() -> None:
    other = Subjects("casa")
    subjects = [g.subject for p in permissions(other) for g in (*p.publish, *p.deny_publish)]
    assert not [s for s in subjects if "ruby" in s.lower()]
    assert "$JS.API.STREAM.DELETE.CASA_AUDIT" in subjects
    assert "$KV.casa_projection.>" in subjects
