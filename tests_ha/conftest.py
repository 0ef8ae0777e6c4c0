"""The gateway against a REAL Home Assistant Core (``../shared/tools/ha/``), not the simulator.

Run with ``make test-ha``: it installs Home Assistant (``setup.sh``, into ``$HA_DIR``, default
``/tmp/ha``) and runs this folder inside a fresh network namespace that has only loopback.
A plain ``pytest`` never collects this folder (``pytest_ignore_collect`` below): only a
command line that names it, such as ``pytest services/gateway/tests_ha``, runs it.

Home Assistant is started once per session on a free port with ``start.sh`` (by path, never
copied), its token comes from ``get_token.py``, and ``stop.sh`` stops it by its pid file.
Entities used: ``input_boolean.c|d|e`` (``a`` and ``b`` belong to HA's own automations).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio
from nats.aio.client import Client

from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_gateway
from ruby_hasim.testing import HaClient
from ruby_natsx.topology import Topology
from ruby_runtime.secret import Secret

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOOLS = Path(os.environ.get("RUBY_HA_TOOLS", REPO.parent / "shared" / "tools" / "ha")).resolve()
HA_DIR = Path(os.environ.get("HA_DIR", "/tmp/ha"))  # noqa: S108  # the tools' own default


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect this folder only when the command line names it (or something inside it)."""
    base = config.invocation_params.dir
    for arg in config.args:
        named = (base / arg.split("::", 1)[0]).resolve()
        if named == HERE or HERE in named.parents:
            return None
    return True


# --- Home Assistant ---------------------------------------------------------------------------


@dataclasses.dataclass
class HomeAssistant:
    """One real Home Assistant started by ``start.sh`` from ``HA_DIR``."""

    dir: Path
    port: int
    token: str = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    @property
    def restore_state(self) -> Path:
        """Where HA keeps the states it restores at start (written when it stops)."""
        return self.dir / "config" / ".storage" / "core.restore_state"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HA_DIR": str(self.dir),
            "HA_PORT": str(self.port),
            "HA_SKIP_PIP": "1",
        }

    def _run(self, *command: str) -> str:
        done = subprocess.run(  # our own scripts, by absolute path
            command, env=self._env(), capture_output=True, text=True, timeout=240, check=False
        )
        if done.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def start(self) -> None:
        self._run("bash", str(TOOLS / "start.sh"), str(self.port))

    def stop(self) -> None:
        self._run("bash", str(TOOLS / "stop.sh"))

    def get_token(self) -> None:
        python = str(self.dir / "venv" / "bin" / "python")
        self.token = self._run(python, str(TOOLS / "get_token.py")).strip()

    async def restart_with(self, change: Callable[[], T]) -> T:
        """Stop HA, call ``change()`` while it is down, start HA again; return what it returned.

        The scripts run in a thread: the gateway under test shares this event loop.
        """
        await asyncio.to_thread(self.stop)
        changed = change()
        await asyncio.to_thread(self.start)
        return changed

    async def client(self) -> HaClient:
        return await HaClient.connect(self.url, self.token)


def _only_loopback() -> None:
    interfaces = sorted(name for _, name in socket.if_nameindex())  # this namespace's
    if interfaces != ["lo"]:
        pytest.fail(
            "the real-HA suite runs only in a network namespace with nothing but loopback "
            f"(found {interfaces}); use `make test-ha`, or "
            "unshare -n sh -c 'ip link set lo up && exec \"$@\"' sh <command>"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def home_assistant() -> Iterator[HomeAssistant]:
    _only_loopback()
    for needed in (HA_DIR / "venv" / "bin" / "hass", TOOLS / "start.sh"):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: install Home Assistant with `make test-ha`")
    ha = HomeAssistant(HA_DIR, _free_port())
    ha.start()
    try:
        ha.get_token()
        yield ha
    finally:
        ha.stop()


@pytest_asyncio.fixture
async def ha_ws(home_assistant: HomeAssistant) -> AsyncIterator[HaClient]:
    """A test's own authenticated WebSocket client of the real HA (the observer)."""
    client = await home_assistant.client()
    yield client
    with contextlib.suppress(Exception):
        await client.close()


# --- the gateway, wired as in main.py -----------------------------------------------------------


@pytest_asyncio.fixture
async def gateway(
    nc: Client, topology_applied: Topology, home_assistant: HomeAssistant
) -> AsyncIterator[Gateway]:
    """The bridge and the command runner on one connection to the real HA, connected."""
    config = BridgeConfig(
        url=home_assistant.url,
        token=Secret(home_assistant.token, "ha token"),
        ping_interval=1.0,
        ping_timeout=2.0,
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    async with running_gateway(
        nc, topology_applied.subjects, config, owner="gateway-test-ha", backoff=(0.2, 0.2, 0.2, 0.2)
    ) as gateway:
        yield gateway
