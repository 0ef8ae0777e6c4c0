"""Targeted reconciliation: what changed or disappeared while the gateway was away.

A pure function of the projection (what was published) and HA's ``get_states`` (what is).
An entity version the projection already holds is never published again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ruby_gateway.projection import Projection
from ruby_schemas.ha import HaState


@dataclass(frozen=True)
class Diff:
    changed: tuple[HaState, ...]
    """New entities, and entities whose last_updated is newer than the projection's."""
    removed: tuple[str, ...]
    """Entities in the projection that Home Assistant no longer has."""


def diff(projection: Projection, states: Sequence[HaState]) -> Diff:
    present = {s.entity_id for s in states}
    changed = tuple(s for s in states if not projection.has_seen(s))
    removed = tuple(sorted(e for e in projection if e not in present))
    return Diff(changed, removed)
