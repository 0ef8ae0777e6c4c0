"""After a crash: did Home Assistant already execute the call a dead gateway was making?

A gateway killed after Home Assistant executed a call and before the ledger recorded it leaves
a pending claim. The restarted gateway takes that claim over (the gateway is a singleton:
`KvIdempotencyStore(singleton=True)`), and before calling again, and before judging the
command's deadline or staleness (what happened comes first), it asks Home Assistant's state
machine (ADR-0025):

- a target entity changed after the dead gateway claimed the command, in a context of the
  gateway's own Home Assistant user: that change is the call's effect. It was executed; it is
  recorded with that context id and not repeated;
- a target changed after the claim in someone else's context: the command is stale, superseded
  by that change, and not run;
- no target changed: the call never reached Home Assistant, or it changed nothing, so calling
  (again) is safe;
- a command without target entities leaves nothing to look at: it is not repeated (at most
  once) and is reported with the outcome unknown. So is an event to fire on the bus
  (``FireEventV1``): Home Assistant keeps no record of the events it fired.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from ruby_gateway.ha_client import HaConnection
from ruby_schemas.commands import CallServiceV1, FireEventV1
from ruby_schemas.ha import HaState

Verdict = Literal["executed", "superseded", "unknown", "call"]

_USERS: weakref.WeakKeyDictionary[HaConnection, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Finding:
    """What Home Assistant's state says about a command claimed by a dead gateway."""

    verdict: Verdict
    reason: str
    context_id: str | None = None


async def gateway_user(conn: HaConnection) -> str:
    """The id of the Home Assistant user the gateway's token belongs to (asked once per
    connection)."""
    known = _USERS.get(conn)
    if known is None:
        answer = await conn.call("auth/current_user")
        known = str(answer.get("id")) if isinstance(answer, dict) else ""
        _USERS[conn] = known
    return known


async def find_out(
    conn: HaConnection, command: CallServiceV1 | FireEventV1, claimed_at: float
) -> Finding:
    """Look for the effect of ``command``, claimed by a dead gateway at ``claimed_at``."""
    since = datetime.fromtimestamp(claimed_at, UTC)
    if isinstance(command, FireEventV1):
        return Finding(
            "unknown",
            f"the gateway firing {command.event_type} died (claimed at {since.isoformat()}); "
            "Home Assistant keeps no record of the events it fired, so it is not fired again",
        )
    targets = set(command.target.entity_id)
    if not targets:
        return Finding(
            "unknown",
            f"the gateway calling Home Assistant died (claimed at {since.isoformat()}); the "
            "call has no target entity whose state could tell whether it ran, so it is not "
            "repeated",
        )
    user = await gateway_user(conn)
    raw = await conn.call("get_states", within=30)
    changed: list[HaState] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or item.get("entity_id") not in targets:
            continue
        try:
            state = HaState.model_validate(item)
        except ValidationError:
            continue
        if state.last_updated >= since:
            changed.append(state)
    ours = [s for s in changed if user and s.context.user_id == user]
    if ours:
        state = ours[0]
        return Finding(
            "executed",
            f"executed before the gateway's crash: {state.entity_id} changed at "
            f"{state.last_updated.isoformat()} in the gateway's context {state.context.id}; "
            "not repeated",
            state.context.id,
        )
    if changed:
        state = changed[0]
        return Finding(
            "superseded",
            f"superseded: {state.entity_id} was changed by someone else at "
            f"{state.last_updated.isoformat()}, after the command was claimed",
        )
    return Finding("call", "no target changed since the claim: the call did not take effect")
