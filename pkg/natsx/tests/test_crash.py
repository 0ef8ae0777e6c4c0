"""Duplicates and crashes: kill -9 a worker, restart nats-server; nothing lost, nothing twice."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from ruby_natsx.apply import apply_consumer, apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.server import NatsServer
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import (
    ServerFactory,
    eventually,
    jetstream_ready,
    publish_states,
    state_changed,
)
from ruby_natsx.topology import ENGINE, EVENTS, Topology, topology
from ruby_schemas.registry import decode, encode
from ruby_schemas.rules import RuleFiredV1

WORKER = Path(__file__).with_name("worker_app.py")


class Workers:
    def __init__(self, server: NatsServer, prefix: str, effects: Path) -> None:
        self.server, self.prefix, self.effects = server, prefix, effects
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, consumer: str, *flags: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                self.server.url,
                self.prefix,
                consumer,
                str(self.effects),
                *flags,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def effect_counts(self) -> Counter[str]:
        if not self.effects.exists():
            return Counter()
        return Counter(self.effects.read_text().split())


@pytest.fixture
def workers(nats_server_factory: ServerFactory, prefix: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(nats_server_factory(), prefix, tmp_path / "effects.log")
    yield w
    for proc in w.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def setup(server: NatsServer, prefix: str) -> tuple[JetStreamContext, Topology, str]:
    nc = await connect(NatsSettings(url=server.url, name="test", reconnect_wait=0.1))
    js = nc.jetstream()
    topo = topology(Subjects(prefix))
    await apply_topology(js, topo)
    # A short AckWait so a crashed worker's messages come back within the test.
    crashy = dataclasses.replace(
        topo.consumer(ENGINE), durable="crashy", ack_wait=1.0, max_deliver=50
    )
    await apply_consumer(js, crashy)
    return js, topo, crashy.durable


async def outputs(js: JetStreamContext, topo: Topology) -> list[str]:
    stream, subject = topo.stream(EVENTS).name, topo.subjects.rule("echo", "fired")
    info = await js.stream_info(stream, subjects_filter=subject)
    found, seq = [], 1
    for _ in range((info.state.subjects or {}).get(subject, 0)):
        raw = await js.get_msg(stream, seq, subject=subject, next=True)
        data = decode(raw.data or b"").data
        assert isinstance(data, RuleFiredV1)
        found.append(data.trigger_id)
        seq = (raw.seq or seq) + 1
    return found


async def test_the_same_message_published_twice_is_stored_once(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    envelope = state_changed("light.kitchen", "on")
    subject = topology_applied.subjects.ha_state("light.kitchen")
    first = await js.publish(subject, encode(envelope), headers={"Nats-Msg-Id": envelope.id})
    second = await js.publish(subject, encode(envelope), headers={"Nats-Msg-Id": envelope.id})
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert (await js.stream_info(topology_applied.stream(EVENTS).name)).state.messages == 1


async def test_killed_after_its_effect_before_its_ack_the_effect_happens_once(
    workers: Workers,
) -> None:
    js, topo, consumer = await setup(workers.server, workers.prefix)
    (only,) = await publish_states(js, topo.subjects, 1)

    dying = workers.start(consumer, "--die-before-ack")
    assert dying.wait(timeout=30) == -signal.SIGKILL
    assert workers.effect_counts() == {only: 1}
    assert await outputs(js, topo) == []  # it died before publishing or acking

    workers.start(consumer)  # the restarted service gets the redelivery
    await eventually(lambda: _settled(js, topo, consumer))
    assert workers.effect_counts() == {only: 1}  # the effect did not run again
    assert await outputs(js, topo) == [only]  # and the recorded output was published


async def test_kill_9_and_a_nats_server_restart_mid_stream_lose_nothing_and_double_nothing(
    workers: Workers,
) -> None:
    total = 3000
    js, topo, consumer = await setup(workers.server, workers.prefix)
    ids = await publish_states(js, topo.subjects, total)

    first = workers.start(consumer)
    await eventually(lambda: sum(workers.effect_counts().values()) >= total // 4)
    first.kill()  # kill -9 mid-batch
    first.wait()
    handled_before_crash = len(workers.effect_counts())
    assert handled_before_crash < total

    second = workers.start(consumer)
    await eventually(lambda: len(workers.effect_counts()) >= total // 2)
    workers.server.restart()  # nats-server restarted mid-stream
    await eventually(lambda: jetstream_ready(js), message="JetStream back")
    await eventually(lambda: _settled(js, topo, consumer), within=90, message="all handled")

    effects = workers.effect_counts()
    assert set(effects) == set(ids)  # every message handled
    found = await outputs(js, topo)
    assert sorted(found) == sorted(ids)  # every output stored exactly once
    assert len(found) == total
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    print(
        f"\ncrash: {total} messages, {sum(effects.values())} handler runs, "
        f"{handled_before_crash} handled before kill -9"
    )


async def _settled(js: JetStreamContext, topo: Topology, consumer: str) -> bool:
    try:
        info = await js.consumer_info(topo.stream(EVENTS).name, consumer)
    except Exception:  # the server is restarting
        return False
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)
