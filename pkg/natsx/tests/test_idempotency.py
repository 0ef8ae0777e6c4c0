"""The idempotency ledger on real JetStream KV: check-and-set under concurrency, leases, replay."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ruby_natsx import tuning
from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Delivery, Outbound
from ruby_natsx.idempotency import (
    Claim,
    Done,
    KvIdempotencyStore,
    idempotent,
    message_key,
    taken_over,
)
from ruby_natsx.testing import state_changed
from ruby_natsx.topology import IDEMPOTENCY, Topology
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope

DELIVERY = Delivery("ruby.evt.ha.state.light.x", "S", "c", 1, 1, {}, datetime.now(UTC))


async def ledger(js: JetStreamContext, topo: Topology) -> KeyValue:
    return await js.key_value(topo.bucket(IDEMPOTENCY).bucket)


async def test_the_ledger_window_is_the_bucket_ttl(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    info = await js.stream_info(topology_applied.bucket(IDEMPOTENCY).stream().name)
    assert info.config.max_age == tuning.IDEMPOTENCY_TTL
    assert tuning.IDEMPOTENCY_TTL > 100 * tuning.EVENTS_DUPLICATE_WINDOW


async def test_concurrent_claims_of_one_key_let_exactly_one_worker_in(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    stores = [KvIdempotencyStore(kv, owner=f"w{i}") for i in range(8)]
    results = await asyncio.gather(*(s.claim("k1") for s in stores), return_exceptions=True)
    claims = [r for r in results if isinstance(r, Claim)]
    refused = [r for r in results if isinstance(r, TransientError)]
    assert len(claims) == 1
    assert len(refused) == 7


async def test_a_completed_key_returns_its_outputs_and_a_released_one_can_be_claimed(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    store = KvIdempotencyStore(kv, owner="w")
    env = state_changed("light.x", "on")
    claim = await store.claim("done")
    assert isinstance(claim, Claim)
    await store.complete(claim, [Outbound("ruby.evt.x", env, {"H": "1"})])
    assert await store.claim("done") == Done((Outbound("ruby.evt.x", env, {"H": "1"}),))

    failed = await store.claim("failed")
    assert isinstance(failed, Claim)
    await store.release(failed)
    assert isinstance(await store.claim("failed"), Claim)


async def test_a_claim_left_by_a_crashed_worker_is_taken_over_after_its_lease(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    crashed = KvIdempotencyStore(kv, owner="crashed", lease=0.2)
    survivor = KvIdempotencyStore(kv, owner="survivor", lease=0.2)
    stale = await crashed.claim("k")
    assert isinstance(stale, Claim)
    with pytest.raises(TransientError, match="being handled by crashed"):
        await survivor.claim("k")
    await asyncio.sleep(0.3)  # the lease runs out: time is the condition here
    taken = await survivor.claim("k")
    assert isinstance(taken, Claim)
    # The crashed worker's late completion is refused: the claim is no longer its own.
    with pytest.raises(TransientError, match="lost the claim"):
        await crashed.complete(stale, [])


async def test_the_middleware_runs_the_handler_once_per_key(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    calls: list[str] = []

    async def effect(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        calls.append(envelope.id)
        return [Outbound("ruby.evt.out", envelope)]

    handler = idempotent(KvIdempotencyStore(kv, owner="w"))(effect)
    env = state_changed("light.x", "on")
    first = await handler(env, DELIVERY)
    again = await handler(env, DELIVERY)  # a redelivery of the same message
    assert calls == [env.id]
    assert list(again) == list(first)
    assert message_key(env, DELIVERY) == f"S.c.{env.id}"


async def test_a_failing_handler_releases_its_claim_for_the_retry(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    attempts: list[int] = []

    async def flaky(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        attempts.append(1)
        if len(attempts) == 1:
            raise TransientError("HA busy")
        return []

    handler = idempotent(KvIdempotencyStore(kv, owner="w"))(flaky)
    env = state_changed("light.x", "on")
    with pytest.raises(TransientError):
        await handler(env, DELIVERY)
    assert await handler(env, DELIVERY) == []
    assert len(attempts) == 2


async def test_a_singletons_claim_left_by_an_earlier_process_is_taken_over_at_once(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    dead = KvIdempotencyStore(kv, owner="gateway-1-dead", singleton=True)
    alive = KvIdempotencyStore(kv, owner="gateway-2-alive", singleton=True)
    left = await dead.claim("k")
    assert isinstance(left, Claim)
    assert left.taken_over is None
    # The same process's own pending claim is a concurrent delivery: wait for its lease.
    with pytest.raises(TransientError, match="being handled by gateway-1-dead"):
        await dead.claim("k")
    taken = await alive.claim("k")  # another process of a singleton: the first one died
    assert isinstance(taken, Claim)
    assert taken.taken_over is not None
    assert taken.taken_over.owner == "gateway-1-dead"
    seen: list[object] = []

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        seen.append(taken_over())
        return []

    await alive.release(taken)
    await dead.claim("k2")
    await idempotent(alive, key=lambda e, d: "k2")(handler)(
        state_changed("light.x", "on"), DELIVERY
    )
    assert len(seen) == 1
    assert getattr(seen[0], "owner", None) == "gateway-1-dead"
    assert taken_over() is None  # only inside the handler's run


async def test_a_claim_this_process_could_neither_complete_nor_release_is_taken_back_at_once(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    kv = await ledger(js, topology_applied)
    store = KvIdempotencyStore(kv, owner="gateway-1")
    first = await store.claim("orphan")
    assert isinstance(first, Claim)
    # NATS went away between the effect and complete(): both complete and release failed.
    store._active.discard("orphan")
    again = await store.claim("orphan")  # the redelivery, once NATS is back: no lease to wait
    assert isinstance(again, Claim)
    assert again.taken_over is not None
    assert again.taken_over.owner == "gateway-1"


async def test_a_failed_run_on_a_dead_claim_hands_it_back_so_the_retry_still_knows(
    js: JetStreamContext, topology_applied: Topology
) -> None:
    # Seen under load: the restarted gateway took a dead gateway's claim over, failed at once
    # (Home Assistant not connected yet) and released it; the retry then claimed a fresh key,
    # did not know the dead gateway may have called, and called Home Assistant again.
    kv = await ledger(js, topology_applied)
    dead = KvIdempotencyStore(kv, owner="gateway-1-dead", singleton=True)
    alive = KvIdempotencyStore(kv, owner="gateway-2-alive", singleton=True)
    left = await dead.claim("cmd.1")
    assert isinstance(left, Claim)
    seen: list[object] = []

    async def handler(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        seen.append(taken_over())
        if len(seen) == 1:
            raise TransientError("home assistant is not connected")
        return []

    run = idempotent(alive, key=lambda e, d: "cmd.1")(handler)
    env = state_changed("light.x", "on")
    with pytest.raises(TransientError):
        await run(env, DELIVERY)
    assert await run(env, DELIVERY) == []
    assert [getattr(s, "owner", None) for s in seen] == ["gateway-1-dead"] * 2
    assert [getattr(s, "since", None) for s in seen] == [seen[0].since] * 2  # type: ignore[attr-defined]
