"""`rubyctl dlq ls | show | replay | purge` against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from ruby_ctl.cli import main
from ruby_ctl.testing import Installation
from ruby_natsx.dlq import REPLAYED_FROM, dead_letter
from ruby_natsx.fate import Fate, Reason, Verdict
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import state_changed
from ruby_natsx.topology import AUDIT, COMMANDS, DLQ, EVENTS
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.registry import decode, encode

T = TypeVar("T")

FAKE = 1_000_000_000  # fake origins' sequences start past any real message's


class Dlq:
    """The secured test installation, driven through the real `rubyctl dlq` operator path.

    Each test uses its own stream sequences, all past ``FAKE``: a dead letter's id is derived
    from its origin, and the DLQ stream dedupes ids for its duplicate window, across tests too,
    so a fake origin must never be one a real message of the shared installation may have.
    """

    def __init__(self, installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
        self.installation = installation
        self.subjects = installation.subjects
        self.topo = installation.topology
        for name, value in installation.environ().items():
            monkeypatch.setenv(name, value)

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    def run(self, coro_fn: Callable[[Client], Awaitable[T]], identity: str = OPERATOR) -> T:
        async def go() -> T:
            nc = await self.installation.connect(identity)
            try:
                return await coro_fn(nc)
            finally:
                await nc.drain()

        return asyncio.run(go())

    def add_letter(
        self,
        stream: str,
        consumer: str,
        subject: str,
        seq: int,
        payload: bytes,
        reason: Reason,
        age: timedelta = timedelta(0),
    ) -> None:
        delivery = Delivery(
            subject, stream, consumer, seq, 5, {"X-Origin": "test"}, datetime.now(UTC)
        )
        outputs = dead_letter(
            self.subjects,
            service=consumer,
            delivery=delivery,
            payload=payload,
            fate=Fate(Verdict.DEAD_LETTER, reason=reason, error="boom"),
            first_failed_at=datetime.now(UTC) - age,
            cause=None,
        )
        if age:  # pretend it last failed long ago
            letter = outputs[0].envelope.data
            assert isinstance(letter, DeadLetterV1)
            aged = letter.model_copy(update={"last_failed_at": datetime.now(UTC) - age})
            envelope = outputs[0].envelope.model_copy(update={"data": aged})
            outputs[0] = Outbound(outputs[0].subject, envelope)

        # Published as the service whose consumer gave up on it, as its runner does.
        async def publish(nc: Client) -> None:
            publisher = Publisher(nc)
            try:
                await publisher.publish(outputs)
            finally:
                await publisher.close()

        self.run(publish, identity=consumer)


@pytest.fixture
def inst(installation: Installation, monkeypatch: pytest.MonkeyPatch) -> Dlq:
    dlq = Dlq(installation, monkeypatch)

    async def empty(nc: Client) -> None:  # the installation is shared by the session
        await nc.jetstream().purge_stream(dlq.topo.stream(DLQ).name)

    dlq.run(empty)
    return dlq


def test_ls_lists_with_filters_and_show_prints_the_origin(
    inst: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    s, events, commands = (
        inst.subjects,
        inst.topo.stream(EVENTS).name,
        inst.topo.stream(COMMANDS).name,
    )
    payload = state_changed("light.kitchen", "on").model_dump_json().encode()
    inst.add_letter(
        events, "engine", s.ha_state("light.kitchen"), FAKE + 7, payload, Reason.MAX_DELIVERIES
    )
    inst.add_letter(
        commands,
        "gateway",
        s.command("light", "turn_on"),
        FAKE + 3,
        b"\xff\x00",
        Reason.UNDECODABLE,
        age=timedelta(hours=3),
    )

    code, out, _ = inst.cli(capsys, "dlq", "ls")
    assert code == 0
    assert "2 dead letter(s)" in out
    assert s.command("light", "turn_on") in out
    assert "undecodable" in out

    code, out, _ = inst.cli(capsys, "dlq", "ls", "--consumer", "gateway", "--json")
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["stream"] == commands
    assert record["stream_sequence"] == FAKE + 3

    _, out, _ = inst.cli(capsys, "dlq", "ls", "--older-than", "1h")
    assert "1 dead letter(s)" in out
    assert "gateway" in out
    _, out, _ = inst.cli(capsys, "dlq", "ls", "--subject", f"{s.prefix}.evt.ha.state.light.*")
    assert "1 dead letter(s)" in out
    assert "engine" in out

    code, out, _ = inst.cli(capsys, "dlq", "show", str(record["seq"]))
    assert code == 0
    assert "not UTF-8, 2 bytes" in out
    assert f"{commands} / {FAKE + 3}" in out
    assert '"X-Origin": "test"' in out

    code, _, err = inst.cli(capsys, "dlq", "show", "9999")
    assert code == 1
    assert "no dead letter with sequence 9999" in err


def test_replay_republishes_with_a_new_id_audits_and_removes(
    inst: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    s, events = inst.subjects, inst.topo.stream(EVENTS).name
    original = state_changed("light.kitchen", "on")
    payload = original.model_dump_json().encode()
    inst.add_letter(
        events, "engine", s.ha_state("light.kitchen"), FAKE + 17, payload, Reason.MAX_DELIVERIES
    )

    code, out, _ = inst.cli(capsys, "dlq", "replay")
    assert code == 0
    assert "1 dead letter(s) replayed" in out

    async def check(nc: Client) -> None:
        js = nc.jetstream()
        replayed = await js.get_last_msg(events, s.ha_state("light.kitchen"))
        assert replayed.data == payload  # byte-exact
        headers = replayed.headers or {}
        assert headers[REPLAYED_FROM]
        assert headers["Nats-Msg-Id"] != original.id  # a new message id
        audit = await js.get_last_msg(
            inst.topo.stream(AUDIT).name, s.audit("operator", "message_replayed")
        )
        record = decode(audit.data or b"").data
        assert isinstance(record, AuditRecordV1)
        assert record.action == "message.replayed"

    inst.run(check)
    _, out, _ = inst.cli(capsys, "dlq", "ls")
    assert "0 dead letter(s)" in out


def test_purge_asks_unless_told_and_audits(
    inst: Dlq, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, events = inst.subjects, inst.topo.stream(EVENTS).name
    inst.add_letter(
        events, "engine", s.ha_state("light.a"), FAKE + 21, b"{}", Reason.PERMANENT_ERROR
    )
    inst.add_letter(
        events, "engine", s.ha_state("light.b"), FAKE + 22, b"{}", Reason.PERMANENT_ERROR
    )

    code, _, err = inst.cli(capsys, "dlq", "purge")  # no terminal, no --yes
    assert code == 1
    assert "without confirmation" in err

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out, _ = inst.cli(capsys, "dlq", "purge")
    assert code == 1
    assert "nothing purged" in out
    _, out, _ = inst.cli(capsys, "dlq", "ls")
    assert "2 dead letter(s)" in out

    code, out, _ = inst.cli(capsys, "dlq", "purge", "--subject", "*.light.a", "--yes")
    assert code == 0
    assert "1 dead letter(s) purged" in out
    _, out, _ = inst.cli(capsys, "dlq", "ls")
    assert "1 dead letter(s)" in out
    assert "light.b" in out

    async def audited(nc: Client) -> str:
        js = nc.jetstream()
        msg = await js.get_last_msg(
            inst.topo.stream(AUDIT).name, s.audit("operator", "message_purged")
        )
        record = decode(msg.data or b"").data
        assert isinstance(record, AuditRecordV1)
        return record.target

    assert inst.run(audited) == f"{events}/{FAKE + 21}"


def test_a_bad_duration_and_no_server_are_clear_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["dlq", "ls", "--older-than", "soon"])
    assert "not a duration" in capsys.readouterr().err


def test_a_forged_dead_letter_with_unsafe_headers_is_never_shown_or_replayed(
    inst: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: a dead letter's headers are sent again on replay, so a stored letter whose
    headers could inject a header line is refused, whoever managed to put it on the DLQ."""
    s, events = inst.subjects, inst.topo.stream(EVENTS).name
    original = state_changed("light.forged", "on")
    inst.add_letter(
        events, "engine", s.ha_state("light.forged"), 31, encode(original), Reason.PERMANENT_ERROR
    )

    dlq_subject = s.dlq(events, "engine")

    async def stored(nc: Client) -> bytes:
        msg = await nc.jetstream().get_last_msg(inst.topo.stream(DLQ).name, dlq_subject)
        return msg.data or b""

    document = json.loads(inst.run(stored))
    document["data"]["headers"] = {"X-Evil": "a\r\nNats-Msg-Id: forged"}

    async def forge(nc: Client) -> int:  # as the engine, which may publish dead letters
        publisher = Publisher(nc)
        try:
            raw = json.dumps(document).encode()
            return await publisher.publish_raw(dlq_subject, raw, {}, msg_id="forged-31")
        finally:
            await publisher.close()

    forged = inst.run(forge, identity="engine")
    for verb in ("show", "replay"):
        code, out, err = inst.cli(capsys, "dlq", verb, str(forged))
        assert code == 1, verb
        assert f"DLQ message {forged} is not a valid dead letter" in err
        assert "data.headers.X-Evil: a header value must not hold a control character" in err
        assert "Nats-Msg-Id: forged" not in out + err  # the hostile value is never echoed

    async def replayed(nc: Client) -> bool:
        try:
            await nc.jetstream().get_last_msg(events, s.ha_state("light.forged"))
        except NotFoundError:
            return False
        return True

    assert not inst.run(replayed)  # nothing reached the original subject
    _, out, _ = inst.cli(capsys, "dlq", "ls")
    assert "1 dead letter(s)" in out  # the genuine one, listed; the forged one, not
