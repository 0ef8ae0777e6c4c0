"""The virtual home: the packaged default, YAML files, the generator, and the CLI."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

from ruby_hasim import HomeError, default_home, generate_home, load_home
from ruby_hasim.testing import HaClient, SimulatorFactory


def test_default_home_has_every_kind() -> None:
    home = default_home()
    domains = [e.entity_id.split(".")[0] for e in home.entities]
    for domain in ("light", "switch", "binary_sensor", "sensor", "input_boolean"):
        assert domains.count(domain) >= 3
    motion = [e for e in home.entities if e.entity_id.startswith("binary_sensor.")]
    assert all(e.attributes["device_class"] == "motion" for e in motion)
    assert all("friendly_name" in e.attributes for e in home.entities)


def test_generated_home() -> None:
    home = generate_home(10_000)
    ids = [e.entity_id for e in home.entities]
    assert len(ids) == len(set(ids)) == 10_000
    assert generate_home(10_000) == home


def test_load_home_file(tmp_path: Path) -> None:
    path = tmp_path / "home.yaml"
    path.write_text(
        "lights:\n  - {entity_id: light.desk, state: 'on', attributes: {brightness: 5}}\n"
        "sensors:\n  - {entity_id: sensor.co2, state: 612, "
        "attributes: {unit_of_measurement: ppm}}\n"
    )
    home = load_home(path)
    assert [e.entity_id for e in home.entities] == ["light.desk", "sensor.co2"]
    assert home.entities[1].state == "612"
    assert home.entities[1].attributes["friendly_name"] == "Co2"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("robots: []", "unknown section"),
        ("lights:\n  - {entity_id: switch.x, state: 'on'}", "not in domain light"),
        ("lights:\n  - {entity_id: light.x, state: on}", "quote on/off"),
        (
            "lights:\n  - {entity_id: light.x, state: 'on'}\n  - {entity_id: light.x, state: x}",
            "duplicate",
        ),
        ("lights:\n  - {entity_id: light.X, state: 'on'}", "domain.object_id"),
        ("lights:\n  - {entity_id: light.x, state: 'on', colour: red}", "unknown keys"),
    ],
)
def test_bad_home_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "home.yaml"
    path.write_text(text)
    with pytest.raises(HomeError, match=error):
        load_home(path)


async def test_large_home_serves_get_states(hasim_factory: SimulatorFactory) -> None:
    sim = await hasim_factory(generate_home(10_000))
    client = await HaClient.connect(sim.url, sim.token)
    try:
        reply = await client.command("get_states")
        assert len(reply["result"]) == 10_000
    finally:
        await client.close()


async def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    code = "from ruby_hasim.main import main; raise SystemExit(main())"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "--port", "0", "--token", "cli-token",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        match = re.search(r"ws://127\.0\.0\.1:\d+/api/websocket", line)
        assert match, line
        client = await HaClient.connect(match.group(0), "cli-token")
        assert (await client.command("ping"))["type"] == "pong"
        await client.close()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
