"""Each service starts from its image against a local stack and reports ready (make image-test).

Run by ``make image-test`` after ``images/build.sh`` built the images (never by ``make test``:
it needs buildah and the images). The stack is the tests' own installation (OpenBao, a TLS +
NKEY nats-server, the topology) and the HA simulator, on 127.0.0.1. Each service runs inside its
image with ``buildah run --network host``, as the image's user ``ruby``: its credentials (CA,
AppRole role and secret id) are copied into a directory that user owns and mounted at
``/run/ruby``, as a deployment injects them, never baked into the image. Ready means what
``rubyctl up`` waits for: the audit sink's and the engine's status records say ``ready``, the
gateway's ``/readyz`` answers 200. Each is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil
import pytest
from nats.aio.client import Client

from ruby_ctl.children import status_ready
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT_SINK, ENGINE, STATUS
from ruby_runtime.version import VERSION

ROOT = Path(__file__).resolve().parents[1]
UID = 10001
"""The images' user (Dockerfile)."""
MOUNT = "/run/ruby"
BUILDAH_ENV = {
    **os.environ,
    "STORAGE_DRIVER": os.environ.get("STORAGE_DRIVER", "vfs"),
    "BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot"),
}

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah")


def image(name: str) -> str:
    return f"localhost/ruby-core-{name}:{VERSION}"


def credentials(inst: Installation, identity: str, into: Path) -> dict[str, str]:
    """Copy what ``identity`` needs to start into ``into`` (owned by the image's user); the
    variables that point the service at it, at the stack and at ``MOUNT`` inside the image."""
    into.mkdir(parents=True)
    shutil.copy(inst.state.pki.ca_cert, into / "ca.pem")
    shutil.copy(inst.state.role_id_file(identity), into / "role_id")
    shutil.copy(inst.state.secret_id_file(identity), into / "secret_id")
    for path in (into, *into.iterdir()):
        os.chown(path, UID, UID)
    return {
        "RUBY_PREFIX": inst.prefix,
        "RUBY_NATS_URL": inst.nats_url,
        "RUBY_NATS_CA_FILE": f"{MOUNT}/ca.pem",
        "RUBY_VAULT_ADDR": inst.bao.addr,
        "RUBY_VAULT_ROLE_ID_FILE": f"{MOUNT}/role_id",
        "RUBY_VAULT_SECRET_ID_FILE": f"{MOUNT}/secret_id",
        "RUBY_LOG_LEVEL": "INFO",
    }


class Contained:
    """One service running inside its image (``buildah run``), stopped by its process group."""

    def __init__(self, name: str, mount: Path, env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.ctr = subprocess.run(
            ["buildah", "from", "--quiet", image(name)],  # noqa: S607  # buildah from PATH
            env=BUILDAH_ENV, capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()  # fmt: skip
        variables = [arg for k, v in env.items() for arg in ("--env", f"{k}={v}")]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["buildah", "run", "--network", "host", "--volume", f"{mount}:{MOUNT}",  # noqa: S607
                 *variables, self.ctr, "--", "/app/entrypoint"],
                env=BUILDAH_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def service_pid(self) -> int | None:
        """The service's own process: the descendant of our ``buildah run`` running the
        program (buildah kills it outright when it is signalled itself)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                if any("/app/venv/bin/" in part for part in child.cmdline()):
                    return child.pid
        return None

    async def healthy(self) -> bool:
        """The image's HEALTHCHECK command, run in the running container, says healthy."""
        done = await asyncio.to_thread(
            subprocess.run,
            ["buildah", "run", self.ctr, "--", "/app/entrypoint", "--healthcheck"],
            env=BUILDAH_ENV, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        return done.returncode == 0

    def stop(self) -> int:
        """SIGTERM to the service inside (as a container runtime sends it), then the exit
        code ``buildah run`` passes on; SIGKILL to our process group after 60 s."""
        if self.process.poll() is None:
            pid = self.service_pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
            else:
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        subprocess.run(["buildah", "rm", self.ctr], env=BUILDAH_ENV,  # noqa: S607
                       capture_output=True, check=False, timeout=120)  # fmt: skip
        return self.process.returncode


@pytest.fixture
def contained() -> Iterator[list[Contained]]:
    started: list[Contained] = []
    yield started
    for service in reversed(started):
        service.stop()


async def ready(probe: Callable[[], Awaitable[bool]], service: Contained) -> None:
    """Until ``probe`` says ready (90 s at most); a failure shows the service's output."""
    try:
        await eventually(probe, within=90, message=f"{service.name} ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its output:\n{service.output()}") from None


async def test_each_service_starts_from_its_image_and_reports_ready(
    installation: Installation, hasim: Simulator, tmp_path: Path, contained: list[Contained]
) -> None:
    inst = installation
    inst.store_ha_token(hasim.token)
    nc = await inst.connect("operator", name="image-test")
    try:
        await start_each(inst, hasim, nc, tmp_path, contained)
    finally:
        await nc.close()


async def start_each(
    inst: Installation, hasim: Simulator, nc: Client, tmp_path: Path, contained: list[Contained]
) -> None:
    kv = await nc.jetstream().key_value(inst.topology.bucket(STATUS).bucket)
    since = datetime.now(UTC)

    sink_dir = tmp_path / "audit-sink"
    env = credentials(inst, AUDIT_SINK, sink_dir)
    (sink_dir / "audit").mkdir()
    os.chown(sink_dir / "audit", UID, UID)
    sink = Contained("audit-sink", sink_dir, {**env, "RUBY_AUDIT_DB": f"{MOUNT}/audit/audit.db"},
                     tmp_path / "audit-sink.log")  # fmt: skip
    contained.append(sink)
    await ready(status_ready(kv, AUDIT_SINK, since), sink)

    gateway_dir = tmp_path / "gateway"
    env = credentials(inst, "gateway", gateway_dir)
    port = free_port()
    gateway = Contained("gateway", gateway_dir,
                        {**env, "RUBY_HA_URL": hasim.url, "RUBY_GATEWAY_HEALTH_PORT": str(port)},
                        tmp_path / "gateway.log")  # fmt: skip
    contained.append(gateway)
    async with aiohttp.ClientSession() as http:

        async def answers() -> bool:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as reply:
                    return reply.status == 200
            except aiohttp.ClientError:
                return False

        await ready(answers, gateway)

    engine_dir = tmp_path / "engine"
    env = credentials(inst, ENGINE, engine_dir)
    shutil.copytree(ROOT / "rules", engine_dir / "rules", ignore=shutil.ignore_patterns("examples"))
    for path in (engine_dir / "rules", *(engine_dir / "rules").rglob("*")):
        os.chown(path, UID, UID)
    engine = Contained("engine", engine_dir, {**env, "RUBY_RULES_DIR": f"{MOUNT}/rules"},
                       tmp_path / "engine.log")  # fmt: skip
    contained.append(engine)
    await ready(status_ready(kv, ENGINE, since), engine)

    for service in (sink, gateway, engine):  # the images' HEALTHCHECK, run inside each
        await ready(service.healthy, service)
    for service in (engine, gateway, sink):  # what rubyctl up does on Ctrl-C, in this order
        assert service.running(), service.output()
        assert service.stop() == 0, service.output()
    contained.clear()
