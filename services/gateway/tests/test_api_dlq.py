"""Dead letters through the real Traefik, as an admin (issue 16, ADR-0038)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import aiohttp

from ruby_ctl.testing import Installation
from ruby_natsx.dlq import REPLAYED_FROM, DeadLetters
from ruby_natsx.testing import put_dead_letter
from ruby_natsx.topology import (
    AUDIT,
    AUDIT_SINK,
    COMMANDS,
    DLQ,
    ENGINE,
    EVENTS,
    GATEWAY,
)
from ruby_schemas.api_tokens import Scope

if TYPE_CHECKING:
    from .conftest import Stack


async def test_dead_letters_are_listed_shown_replayed_and_deleted_by_an_admin(
    stack: Stack, secure_installation: Installation
) -> None:
    inst, s = secure_installation, secure_installation.subjects
    commands, events = inst.topology.stream(COMMANDS).name, inst.topology.stream(EVENTS).name
    # Beside the stack's three: what the gateway may not replay, each as its service stores it.
    refused: dict[int, tuple[str, str]] = {}
    for service, stream, subject, slug in (
        (AUDIT_SINK, AUDIT, s.audit(ENGINE, "rule_loaded"), "replay-not-allowed"),
        (ENGINE, EVENTS, s.rule("porch_light", "fired"), "replay-not-allowed"),
        (GATEWAY, COMMANDS, s.ha_state("light.hall"), "unverified-origin"),  # not its consumer's
    ):
        nc = await inst.connect(service)
        try:
            seq = await put_dead_letter(
                nc, inst.subjects, stream=inst.topology.stream(stream).name, consumer=service,
                subject=subject, stream_seq=200 + len(refused), payload=b"\xff\x00",
            )  # fmt: skip
        finally:
            await nc.drain()
        refused[seq] = (subject, slug)
    admin = {"Authorization": f"Bearer {stack.tokens['admin']}"}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
            async with http.request(
                method, f"{stack.edge.url}{path}", headers=admin, data=body,
                ssl=stack.client_ssl(),
            ) as reply:  # fmt: skip
                if reply.status >= 400:
                    assert reply.content_type == "application/problem+json"
                got = await reply.json(content_type=None) if reply.status != 204 else None
                return reply.status, got

        # The list: oldest first, without payloads, a page at a time, with rubyctl's filters.
        status, listed = await call("GET", "/dlq")
        assert status == 200
        letters = listed["dead_letters"]
        assert [d["seq"] for d in letters] == [1, 2, 3, *refused]
        assert listed["next_after"] is None
        assert "original_payload" not in letters[0]
        assert (letters[0]["stream"], letters[0]["consumer"]) == (commands, GATEWAY)
        assert letters[0]["original_subject"] == s.command("light", "turn_on")
        assert letters[0]["stream_sequence"] == 101
        assert [d["replayable"] for d in letters] == [True, True, True, False, False, False]
        status, page = await call("GET", "/dlq?limit=2")
        assert ([d["seq"] for d in page["dead_letters"]], page["next_after"]) == ([1, 2], 2)
        status, page = await call("GET", "/dlq?limit=2&after=2")
        assert ([d["seq"] for d in page["dead_letters"]], page["next_after"]) == ([3, 4], 4)
        status, page = await call("GET", f"/dlq?consumer={GATEWAY}&stream={commands}")
        assert [d["seq"] for d in page["dead_letters"]] == [1, 3, 6]
        status, page = await call("GET", f"/dlq?subject={s.prefix}.evt.ha.state.light.*")
        assert [d["seq"] for d in page["dead_letters"]] == [2, 6]
        status, page = await call("GET", "/dlq?older_than=1h")
        assert (status, page["dead_letters"]) == (200, [])
        status, page = await call("GET", "/dlq?newer_than=1h&limit=500")
        assert len(page["dead_letters"]) == 6

        # One, in full: the payload byte-exact (base64), the headers that replay sends again.
        status, shown = await call("GET", "/dlq/4")
        assert status == 200
        assert base64.b64decode(shown["original_payload"]) == b"\xff\x00"
        assert shown["headers"] == {"X-Origin": "test"}
        assert (shown["reason"], shown["delivery_count"]) == ("max_deliveries", 5)

        original = base64.b64decode((await call("GET", "/dlq/1"))[1]["original_payload"])
        before = await stack.counts()
        # Replay: on its original subject, byte-exact, audited with the token's name, gone.
        status, replayed = await call("POST", "/dlq/1/replay")
        assert status == 200, replayed
        assert replayed["replayed_to"] == s.command("light", "turn_on")
        js = stack.operator.jetstream()
        arrived = await js.get_msg(commands, replayed["stream_sequence"])
        assert arrived.subject == s.command("light", "turn_on")
        assert arrived.data == original
        assert (arrived.headers or {})[REPLAYED_FROM] == "1"
        assert (await call("GET", "/dlq/1"))[0] == 404
        (record,) = await stack.audited("message.replayed")
        assert record["details"]["api_token"] == f"t-{Scope.ADMIN.value}"  # its name
        assert record["details"]["dlq_seq"] == 1
        # Keep: replayed into EVENTS, and still in the DLQ.
        status, kept = await call("POST", "/dlq/2/replay", b'{"keep": true}')
        assert (status, kept["kept"]) == (200, True)
        assert (await js.get_msg(events, kept["stream_sequence"])).subject == s.ha_state(
            "light.kitchen"
        )
        assert (await call("GET", "/dlq/2"))[0] == 200

        # Delete: gone, audited with the token's name.
        letters = DeadLetters(stack.operator, s)
        raced = await letters.get(3)
        assert await call("DELETE", "/dlq/3") == (204, None)
        assert not await letters.purge(raced)  # a second delete finds it gone: nothing recorded
        await letters.close()
        assert (await call("GET", "/dlq/3"))[0] == 404
        (record,) = await stack.audited("message.purged")
        details = record["details"]
        assert (details["api_token"], details["dlq_seq"]) == (f"t-{Scope.ADMIN.value}", 3)
        assert not [token for token in stack.tokens.values() if token in json.dumps(record)]
        after = await stack.counts()
        assert after[COMMANDS] == before[COMMANDS] + 1
        assert after[EVENTS] == before[EVENTS] + 1
        assert after[DLQ] == before[DLQ] - 2
        assert after[AUDIT] == before[AUDIT] + 3  # two replays, one delete

        # Refused: each a problem naming the seq or the field; nothing published, nothing gone.
        for seq, (subject, slug) in refused.items():
            status, problem = await call("POST", f"/dlq/{seq}/replay")
            assert (status, problem["type"]) == (409, f"urn:ruby-core:problem:{slug}"), problem
            assert f"rubyctl dlq replay {seq}" in problem["detail"]
            assert subject in problem["detail"]
        for method, path, body, want, field in (
            ("POST", "/dlq/999999/replay", None, 404, ""),
            ("DELETE", "/dlq/999999", None, 404, ""),
            ("GET", "/dlq/999999", None, 404, ""),
            ("POST", "/dlq/abc/replay", None, 400, "seq"),
            ("POST", "/dlq/0/replay", None, 400, "seq"),
            ("DELETE", "/dlq/-3", None, 400, "seq"),
            ("GET", "/dlq/99999999999999999999", None, 400, "seq"),
            ("POST", "/dlq/2/replay", b'{"keep": true, "colour": 1}', 400, "colour"),
            ("POST", "/dlq/2/replay", b"{not json", 400, "body"),
            ("GET", "/dlq?limit=0", None, 400, "limit"),
            ("GET", "/dlq?limit=many", None, 400, "limit"),
            ("GET", "/dlq?after=-1", None, 400, "after"),
            ("GET", "/dlq?older_than=5y", None, 400, "older_than"),
            ("GET", "/dlq?stream=a%20b", None, 400, "stream"),
            ("GET", "/dlq?colour=red", None, 400, "colour"),
        ):
            status, problem = await call(method, path, body)
            assert status == want, (method, path, problem)
            if field:
                assert [e["field"] for e in problem["errors"]] == [field], problem
            else:
                assert "999999" in problem["detail"]
                assert problem["type"] == "urn:ruby-core:problem:no-such-dead-letter"
        assert await stack.counts() == after
