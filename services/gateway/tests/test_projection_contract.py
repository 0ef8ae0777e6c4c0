"""What the gateway writes into the projection bucket is a `ProjectionEntry` (the readers'
contract: the engine and `rubyctl audit why`), and reads back to the same entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ruby_gateway.projection import Projected
from ruby_schemas.ha import HaState
from ruby_schemas.projection import ProjectionEntry

T0 = datetime(2026, 11, 22, 18, 0, 0, 123456, tzinfo=UTC)


def test_the_gateway_writes_what_readers_read() -> None:
    projected = Projected(
        state="on",
        attributes={"friendly_name": "Hallway", "brightness": 153},
        last_changed=T0,
        last_updated=T0 + timedelta(seconds=1),
        context_id="01JD3K2YV9A7Q4M8N2B5C6D7E8",
    )
    entry = ProjectionEntry.model_validate_json(projected.to_json())
    assert entry.entity_state() == projected.entity_state()
    assert entry.context_id == projected.context_id
    assert Projected.from_json(entry.model_dump_json().encode()) == projected


def test_the_projection_keeps_the_location_attributes_rules_read_and_drops_the_rest() -> None:
    home = HaState.model_validate(
        {
            "entity_id": "zone.home",
            "state": "1",
            "attributes": {
                "latitude": 52.37,
                "longitude": 4.89,
                "radius": 100,
                "passive": False,
                "persons": ["person.paulus"],
                "friendly_name": "Home",
            },
            "last_changed": T0.isoformat(),
            "last_updated": T0.isoformat(),
            "context": {"id": "01JD3K2YV9A7Q4M8N2B5C6D7E8"},
        }
    )
    kept = Projected.of(home).attributes
    assert kept == {"latitude": 52.37, "longitude": 4.89, "radius": 100, "friendly_name": "Home"}
    sun = home.model_copy(
        update={
            "entity_id": "sun.sun",
            "attributes": {
                "next_rising": "2026-12-05T07:33:32.971223+00:00",
                "next_setting": "2026-12-04T15:28:44.551245+00:00",
                "elevation": 15.36,
                "azimuth": 183.3,
            },
        }
    )
    assert Projected.of(sun).attributes == {
        "next_rising": "2026-12-05T07:33:32.971223+00:00",
        "next_setting": "2026-12-04T15:28:44.551245+00:00",
    }
