"""The event stream, ``/api/v1/ws``, through the real Traefik (issue 16, ADR-0020): resumed
with no gap and no duplicate after random cuts, a stalled client cut off while others receive,
filters and bad queries, a token as a subprotocol, and a nats-server restart under a client."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck

from ruby_ctl.testing import Installation
from ruby_gateway.api.stream import RING, RING_BYTES
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually, state_changed
from ruby_schemas.registry import encode

if TYPE_CHECKING:
    from .conftest import Stack


async def publish_stream(
    js: JetStreamContext, subjects: Subjects, count: int, *, pad: int = 0
) -> list[int]:
    """Publish ``count`` light state changes (each with ``pad`` bytes of attributes) and, between
    them, changes and events the tests' filter leaves out; return the lights' stream sequences."""
    lights: list[asyncio.Future[PubAck]] = []
    for i in range(count):
        envelope = state_changed(f"light.l{i % 7}", "on" if i % 2 else "off", n=i)
        if pad:
            new = envelope.data.new_state
            assert new is not None
            attributes = {"n": i, "pad": "x" * pad}
            envelope = envelope.model_copy(
                update={"data": envelope.data.model_copy(
                    update={"new_state": new.model_copy(update={"attributes": attributes})})}
            )  # fmt: skip
        lights.append(await js.publish_async(subjects.ha_state(envelope.data.entity_id),
                                             encode(envelope)))  # fmt: skip
        if i % 50 == 0:  # what the filter leaves out
            await js.publish_async(subjects.ha_state("switch.noise"), encode(state_changed(
                "switch.noise", "on")))  # fmt: skip
            await js.publish_async(subjects.ha_event("noise"), b"{}")
    return [(await ack).seq for ack in lights]


async def events_of(
    ws: aiohttp.ClientWebSocketResponse,
    into: list[int],
    budget: int,
    enough: Callable[[], bool] = lambda: False,
) -> bool:
    """Read up to ``budget`` events into ``into`` (their sequences), or until ``enough``; False
    once the server closed. (The server's pings restart `receive`'s own timeout: one here.)"""
    async with asyncio.timeout(30):
        while budget > 0 and not enough():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            frame = json.loads(msg.data)
            if frame["type"] == "event":
                assert frame["kind"] == "state"
                assert frame["event"]["data"]["entity_id"].startswith("light.")
                into.append(frame["seq"])
                budget -= 1
    return True


async def test_a_client_cut_at_random_points_resumes_with_no_gap_and_no_duplicate(
    stack: Stack, secure_installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = secure_installation
    rng = random.Random(16)  # noqa: S311 - reproducible disconnect points, not a secret
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    received: list[int] = []
    reconnects = abrupt = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers=headers, ssl=stack.client_ssl())
        hello = await ws.receive_json(timeout=10)
        publishing = asyncio.create_task(
            publish_stream(stack.operator.jetstream(), inst.subjects, 10_000)
        )
        last = hello["seq"]

        def everything() -> bool:
            return publishing.done() and bool(received) and received[-1] >= max(publishing.result())

        while not everything():
            await events_of(ws, received, rng.randint(1, 1_500), everything)
            if received:
                last = received[-1]
            if rng.random() < 0.5:  # no close frame, whatever is in flight is lost
                ws._response.close()
                abrupt += 1
            else:
                await ws.close()
            reconnects += 1
            ws = await http.ws_connect(f"{url}&since={last}", headers=headers,
                                       ssl=stack.client_ssl())  # fmt: skip
            resumed = await ws.receive_json(timeout=10)
            assert resumed == {"type": "hello", "seq": last, "head": resumed["head"]}
        await ws.close()
    published = publishing.result()
    gaps = len(set(published) - set(received))
    duplicates = len(received) - len(set(received))
    with capsys.disabled():
        print(f"\nstream: {len(published)} changes, {reconnects} reconnects ({abrupt} abrupt), "
              f"{gaps} gaps, {duplicates} duplicates")  # fmt: skip
    assert received == sorted(published)  # every one, once, in stream order
    assert reconnects >= 5


async def test_a_stalled_client_is_cut_off_while_the_others_keep_receiving(
    stack: Stack, secure_installation: Installation
) -> None:
    """More than the socket buffers between the gateway and the client hold (Traefik's side of
    loopback grows to tcp_rmem's 32 MB here; the stalled client's own is kept small): the
    gateway's sends block, it cuts the client off after `SEND_TIMEOUT`, the other client receives
    everything, and the cut one resumes where it was cut."""
    inst = secure_installation
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    count = 12_000  # of 8 KB each: 96 MB

    def small_window(addr: Any) -> socket.socket:
        sock = socket.socket(addr[0], addr[1], addr[2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        return sock

    stalling = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_window))
    async with stalling, aiohttp.ClientSession() as http:
        stalled = await stalling.ws_connect(url, headers=headers, ssl=stack.client_ssl())
        async with http.ws_connect(url, headers=headers, ssl=stack.client_ssl()) as healthy:
            await healthy.receive_json(timeout=10)
            publishing = asyncio.create_task(
                publish_stream(stack.operator.jetstream(), inst.subjects, count, pad=8_000)
            )
            got: list[int] = []
            assert await events_of(healthy, got, count)
            assert got == sorted(await publishing)
            held, held_bytes = stack.events.log.held  # 96 MB went through; memory stays flat
            assert held <= RING
            assert held_bytes <= RING_BYTES
        await eventually(lambda: stack.events.clients == 0, message="the stalled client cut off")
        cut: list[int] = []
        hello = await stalled.receive_json(timeout=10)
        open_ = await events_of(stalled, cut, count)
        assert not open_, "the stalled client was not cut off"
        assert 0 < len(cut) < count
        assert cut == got[: len(cut)]
        if stalled.close_code is not None and stalled.close_code != 1006:
            assert stalled.close_code == 4008
        assert hello["seq"] < cut[0]
        async with http.ws_connect(f"{url}&since={cut[-1]}", headers=headers,
                                   ssl=stack.client_ssl()) as resumed:  # fmt: skip
            await resumed.receive_json(timeout=10)
            rest: list[int] = []
            assert await events_of(resumed, rest, count - len(cut))
        assert cut + rest == got


async def test_the_stream_filters_refuses_bad_queries_and_takes_a_token_as_subprotocol(
    stack: Stack, secure_installation: Installation
) -> None:
    inst = secure_installation
    token = stack.tokens["read"]
    base = f"{stack.edge.url}/ws"
    async with aiohttp.ClientSession() as http:
        for query, field in (
            ("kinds=states,lights", "kinds"),
            ("since=-1", "since"),
            ("since=soon", "since"),
            ("entities=light.hall%20or%201", "entities"),
            ("token=x", "token"),  # a token never travels in the URL: not a parameter
        ):
            async with http.get(f"{base}?{query}", headers={"Authorization": f"Bearer {token}"},
                                ssl=stack.client_ssl()) as reply:  # fmt: skip
                assert reply.status == 400, query
                assert reply.content_type == "application/problem+json"
                assert (await reply.json())["errors"][0]["field"] == field
        async with http.ws_connect(  # a browser's way: the token as a subprotocol
            f"{base}?kinds=rules,events&rules=porch_*",
            protocols=("ruby.v1", f"bearer.{token}"),
            ssl=stack.client_ssl(),
        ) as ws:
            assert ws.protocol == "ruby.v1"  # never the token back
            await ws.receive_json(timeout=10)
            js = stack.operator.jetstream()
            for subject in (
                inst.subjects.rule("kitchen", "fired"),
                inst.subjects.ha_state("light.hall"),
                inst.subjects.rule("porch_light", "fired"),
                inst.subjects.ha_event("doorbell_rang"),
            ):
                await js.publish(subject, b'{"probe": true}')
            first = await ws.receive_json(timeout=10)
            second = await ws.receive_json(timeout=10)
            assert (first["kind"], first["subject"]) == ("rule", inst.subjects.rule(
                "porch_light", "fired"))  # fmt: skip
            assert (second["kind"], second["event"]) == ("event", {"probe": True})
            assert first["seq"] < second["seq"]


async def test_the_stream_goes_on_across_a_nats_server_restart_with_no_gap(
    stack: Stack, secure_installation: Installation
) -> None:
    """kill -9 of nats-server under a connected client: the gateway's reads fail, it retries,
    and the client, never disconnected, gets every change from before and after, once."""
    inst = secure_installation
    assert inst.server is not None
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    js = stack.operator.jetstream()

    async def js_ready() -> bool:
        try:
            await js.publish(inst.subjects.ha_event("probe"), b"{}")
        except Exception:  # not yet: the server is recovering its streams
            return False
        return True

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers=headers, ssl=stack.client_ssl()) as ws,
    ):
        await ws.receive_json(timeout=10)
        before = await publish_stream(js, inst.subjects, 300)
        got: list[int] = []
        assert await events_of(ws, got, 300)
        inst.server.kill()
        inst.server.start()
        await eventually(js_ready, within=60, message="JetStream is back")
        after = await publish_stream(js, inst.subjects, 300)
        assert await events_of(ws, got, 300)
    assert got == before + after
