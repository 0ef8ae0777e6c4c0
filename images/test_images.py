"""The images run: each service to ready, and both compose files as compose would run them
(make image-test).

Run by ``make image-test`` after ``images/build.sh`` built the images (never by ``make test``:
it needs buildah and the images). Each container runs with ``buildah run --network host``, as
the image's user ``ruby``; credentials are mounted, never baked into an image.

- Each service from its image against the tests' own installation (OpenBao, a TLS + NKEY
  nats-server, the topology) and the HA simulator: ready means what ``rubyctl up`` waits for
  (the audit sink's and the engine's status records say ``ready``, the gateway's ``/readyz``
  answers 200), then each image's HEALTHCHECK passes and SIGTERM ends each with exit code 0.
- ``compose/docker-compose.prod.yml`` and ``compose/docker-compose.yml`` run by hand
  (`ComposeRun`): the stack (`rubyctl up --servers-only` in the rubyctl image) with the file's
  volumes, secrets folder and healthcheck, then each service with the file's command,
  variables, secrets, configs and volumes; the production one from the service images after
  the README's ``rubyctl secret ha-token``, the development one from the ``live`` image with
  this checkout's source mounted, where a change to the engine's source restarts the engine.
  Both run the edge too (`rubyctl edge`, Traefik) with the file's secrets and config: a token
  made with `rubyctl token create` in the stack reads ``GET /api/v1/states`` through it, over
  HTTPS checked against the installation's CA for ``localhost``; the gateway's and Traefik's
  keys are 0600 and the images' user's inside their containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from nats.aio.client import Client

from ruby_ctl.children import status_ready
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, load_compose
from ruby_hasim.server import Simulator
from ruby_hasim.testing import SimulatorFactory
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

    def __init__(
        self,
        name: str,
        mount: Path | None,
        env: dict[str, str],
        log: Path,
        *,
        volumes: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> None:
        self.name, self.log, self.env = name, log, env
        self.ctr = subprocess.run(
            ["buildah", "from", "--quiet", image(name)],  # noqa: S607  # buildah from PATH
            env=BUILDAH_ENV, capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()  # fmt: skip
        variables = [arg for k, v in env.items() for arg in ("--env", f"{k}={v}")]
        binds = [*volumes, *([f"{mount}:{MOUNT}"] if mount else [])]
        self.binds = binds
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["buildah", "run", "--network", "host",  # noqa: S607
                 *(arg for bind in binds for arg in ("--volume", bind)),
                 *variables, self.ctr, "--", "/app/entrypoint", *args],
                env=BUILDAH_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def service_pid(self) -> int | None:
        """The service's own process: the descendant of our ``buildah run`` running the
        program, or Traefik, which `rubyctl edge` replaced itself with (buildah kills it
        outright when it is signalled itself)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                line = child.cmdline()
                ours = line[:1] and line[0].startswith("/app/venv/bin/")
                if ours and ("/app/entrypoint" in line or line[0].endswith("/traefik")):
                    return child.pid
        return None

    async def healthy(self, test: Sequence[str] = ("/app/entrypoint", "--healthcheck")) -> bool:
        """The image's HEALTHCHECK command (or ``test``), run in the running container, says
        healthy."""
        done = await asyncio.to_thread(self.exec, *test)
        return done.returncode == 0

    def exec(
        self, *command: str, env: Mapping[str, str] | None = None, volumes: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``command`` run in the running container, with its mounts and variables (`docker
        compose exec`)."""
        merged = {**self.env, **(env or {})}
        variables = [arg for k, v in merged.items() for arg in ("--env", f"{k}={v}")]
        mounts = [arg for bind in (*self.binds, *volumes) for arg in ("--volume", bind)]
        return subprocess.run(
            ["buildah", "run", *mounts, *variables, self.ctr, "--", *command],  # noqa: S607
            env=BUILDAH_ENV, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip

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
    await readyz(port, gateway)

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


# --- the compose files, run by hand: what `docker compose up` would do ------------------------


@dataclass
class ComposeRun:
    """One compose file's services run with buildah as compose would run them, in ``root`` (the
    compose file's folder: its secrets folder, its named volumes under ``volumes/``). The
    network namespace the file shares is this host's loopback here (`--network host`), and
    the ports are free ones, given to `rubyctl up` and the services as their own settings."""

    file: str
    variables: dict[str, str]
    root: Path
    logs: Path
    started: list[Contained]
    nats_port: int = field(default_factory=free_port)
    vault_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    """The API, Traefik's HTTPS: the port the stack publishes, here the host's own."""
    gateway_api_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        while self.vault_port + 1 == self.nats_port:  # OpenBao's cluster port is the next one
            self.vault_port = free_port()
        self.doc = load_compose(ROOT / "compose" / self.file, self.variables)
        owned(self.root / "secrets" / "approle", self.root / "secrets" / "pki")
        owned(*(self.root / "volumes" / volume for volume in self.doc["volumes"]))

    def service(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.doc["services"][name]
        return found

    def binds(self, name: str) -> list[str]:
        """The service's volumes, secrets and configs as bind mounts: a named volume is
        ``root/volumes/<name>``, a relative path is relative to ``root``, except ``../``: this
        checkout (the development file mounts its source)."""

        def host(source: str) -> Path:
            if source.startswith("../"):
                return ROOT / source[3:]
            if source.startswith("./"):
                return self.root / source[2:]
            return self.root / "volumes" / source

        service, found = self.service(name), []
        for entry in service.get("volumes", []):
            source, target, *mode = entry.split(":")
            found.append(":".join([str(host(source)), target, *mode]))
        for secret in service.get("secrets", []):  # short syntax, or source and target
            source = secret if isinstance(secret, str) else secret["source"]
            target = secret if isinstance(secret, str) else secret.get("target", source)
            target = target if target.startswith("/") else f"/run/secrets/{target}"
            found.append(f"{host(self.doc['secrets'][source]['file'])}:{target}:ro")
        for config in service.get("configs", []):
            source = self.doc["configs"][config["source"]]["file"]
            found.append(f"{host(source)}:{config['target']}:ro")
        return found

    async def start_stack(self, image_name: str, **env: str) -> Contained:
        """The stack with its own settings and these free ports, once its healthcheck passes."""
        doc = self.service("stack")
        ports = {"RUBY_NATS_PORT": str(self.nats_port), "RUBY_VAULT_PORT": str(self.vault_port),
                 "RUBY_NATS_HTTP_PORT": "off"}  # fmt: skip
        stack = Contained(image_name, None, {**doc["environment"], **ports, **env},
                          self.logs / "stack.log", volumes=self.binds("stack"),
                          args=doc["command"])  # fmt: skip
        self.started.append(stack)
        await ready(healthcheck(stack, doc), stack)
        return stack

    async def start(self, name: str, image_name: str, running: str, **env: str) -> Contained:
        """Service ``name`` pointed at the stack's ports, once it has printed ``running``."""
        doc = self.service(name)
        to_stack = {
            "RUBY_NATS_URL": f"tls://127.0.0.1:{self.nats_port}",
            "RUBY_VAULT_ADDR": f"http://127.0.0.1:{self.vault_port}",
            "RUBY_LOG_LEVEL": "INFO",
        }
        service = Contained(image_name, None, {**doc["environment"], **to_stack, **env},
                            self.logs / f"{name}.log", volumes=self.binds(name),
                            args=doc.get("command", []))  # fmt: skip
        self.started.append(service)
        await ready(printed(service, running), service)
        return service

    async def healthy(self, name: str, service: Contained) -> None:
        """The service's compose healthcheck passes, run inside it."""
        await ready(healthcheck(service, self.service(name)), service)

    async def start_edge(self, image_name: str) -> Contained:
        """The edge (`rubyctl edge`, Traefik) with the file's command, secrets and config, once
        its healthcheck passes. It listens on 127.0.0.1 here, not the file's 0.0.0.0: the
        namespace is this host's, and nothing here is published beyond it."""
        doc = self.service("edge")
        command = list(doc["command"])
        command[command.index("--bind") + 1] = "127.0.0.1"
        ports = {"RUBY_API_PORT": str(self.api_port), "RUBY_EDGE_PING_PORT": str(free_port()),
                 "RUBY_GATEWAY_API_PORT": str(self.gateway_api_port)}  # fmt: skip
        edge = Contained(image_name, None, {**doc["environment"], **ports}, self.logs / "edge.log",
                         volumes=self.binds("edge"), args=command)  # fmt: skip
        self.started.append(edge)
        await ready(healthcheck(edge, doc), edge)
        return edge

    async def api_through_the_edge(
        self, stack: Contained, gateway: Contained, edge: Contained
    ) -> None:
        """README's way in: a token made in the stack (`docker compose exec stack rubyctl token
        create`), then ``GET /api/v1/states`` through the published port, HTTPS against the
        installation's CA for ``localhost``; refused without the token. The gateway's and
        Traefik's keys are 0600 and the images' user's inside their containers (a secret keeps
        the file's mode)."""
        made = await asyncio.to_thread(
            stack.exec, "/app/entrypoint", "token", "create", "image-test", "--scope", "read",
            env={"RUBY_NATS_URL": f"tls://127.0.0.1:{self.nats_port}",
                 "RUBY_VAULT_ADDR": f"http://127.0.0.1:{self.vault_port}"},
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        token = made.stdout.strip()
        assert token
        assert token not in made.stderr
        for where, key in (
            (gateway, "/run/secrets/gateway_api_key"),
            (edge, "/etc/ruby/pki/edge-client.key"),
            (edge, "/etc/ruby/pki/edge.key"),
        ):
            mode = await asyncio.to_thread(where.exec, "stat", "-c", "%a %u", key)
            assert mode.stdout.split() == ["600", str(UID)], (key, mode.stdout, mode.stderr)
        tls = ssl.create_default_context(cafile=str(self.root / "secrets" / "pki" / "ca.pem"))
        url = f"https://localhost:{self.api_port}/api/v1/states"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=tls) as reply:
                assert reply.status == 401, await reply.text()

            async def states() -> bool:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(url, ssl=tls, headers=headers) as reply:
                    if reply.status != 200:
                        return False  # the gateway sees the new token within a moment
                    body = await reply.json()
                    return isinstance(body, list) and len(body) > 0

            await ready(states, gateway)


def printed(service: Contained, text: str, times: int = 1) -> Callable[[], Awaitable[bool]]:
    """A probe: ``service`` has printed ``text`` (``times`` times at least)."""

    async def probe() -> bool:
        return service.log.read_text(errors="replace").count(text) >= times

    return probe


def healthcheck(service: Contained, doc: Mapping[str, Any]) -> Callable[[], Awaitable[bool]]:
    """A probe: the compose healthcheck of ``doc`` (``["CMD", ...]``), run inside ``service``."""

    async def probe() -> bool:
        return await service.healthy(doc["healthcheck"]["test"][1:])

    return probe


def owned(*paths: Path) -> None:
    """Folders owned by the images' user, as the README's `install -d` makes them."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chown(path, UID, UID)


RUNNING = {
    "audit-sink": '"audit sink running"',
    "gateway": '"gateway running"',
    "engine": '"engine running"',
}
"""What each service prints once it runs (the status record follows)."""


async def readyz(port: int, service: Contained) -> None:
    """The gateway's ``/readyz`` answers 200: it reached the home with its token."""
    async with aiohttp.ClientSession() as http:

        async def answers() -> bool:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as reply:
                    return reply.status == 200
            except aiohttp.ClientError:
                return False

        await ready(answers, service)


async def test_the_production_compose_file_runs_from_the_images(
    hasim_factory: SimulatorFactory, tmp_path: Path, contained: list[Contained]
) -> None:
    """compose/docker-compose.prod.yml: the stack (`rubyctl up --servers-only` in the rubyctl
    image) with its volumes and the secrets folder, the README's `rubyctl secret ha-token` in
    it, then each service from its image with the file's variables, secrets, configs and
    volumes, until each is ready and its healthcheck passes; each stops with exit code 0."""
    hasim = await hasim_factory(token=f"long-lived-{secrets.token_hex(20)}")  # as HA's are
    variables = {"GHCR_OWNER": "someone", "RUBY_HA_URL": hasim.url, "RUBY_TIMEZONE": "UTC"}
    run = ComposeRun("docker-compose.prod.yml", variables, tmp_path / "compose", tmp_path,
                     contained)  # fmt: skip
    shutil.copytree(ROOT / "rules", run.root / "rules", ignore=shutil.ignore_patterns("examples"))
    stack = await run.start_stack("rubyctl")

    token = tmp_path / "token"  # `exec -T stack rubyctl secret ha-token < token.txt`; buildah
    token.write_text(hasim.token)  # run passes no standard input, so the file is mounted
    os.chown(token, UID, UID)
    token.chmod(0o600)
    stored = await asyncio.to_thread(
        stack.exec, "sh", "-c", "/app/entrypoint secret ha-token < /run/token",
        env={"RUBY_VAULT_PORT": str(run.vault_port)}, volumes=[f"{token}:/run/token:ro"],
    )  # fmt: skip
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert hasim.token not in stored.stdout + stored.stderr

    health = free_port()
    sink = await run.start("audit-sink", "audit-sink", RUNNING["audit-sink"])
    gateway = await run.start("gateway", "gateway", RUNNING["gateway"],
                              RUBY_GATEWAY_HEALTH_PORT=str(health),
                              RUBY_GATEWAY_API_PORT=str(run.gateway_api_port))  # fmt: skip
    engine = await run.start("engine", "engine", RUNNING["engine"])
    edge = await run.start_edge("rubyctl")
    await readyz(health, gateway)
    assert (run.root / "volumes" / "audit" / "audit.db").is_file()  # the store in its volume
    assert any((run.root / "volumes" / "jetstream").iterdir())
    for name, service in (("audit-sink", sink), ("gateway", gateway), ("engine", engine)):
        await run.healthy(name, service)
    await run.api_through_the_edge(stack, gateway, edge)
    for service in (edge, engine, gateway, sink, stack):  # compose stops dependents first
        assert service.stop() == 0, service.output()
    contained.clear()


async def test_the_development_compose_file_runs_the_source_and_reloads_it(
    tmp_path: Path, contained: list[Contained]
) -> None:
    """compose/docker-compose.yml: the stack with the demo home, each service under `rubyctl
    live` in the development image with this checkout's source mounted; a change to the
    engine's source restarts the engine in its container and nothing else."""
    run = ComposeRun("docker-compose.yml", {}, tmp_path / "compose", tmp_path, contained)
    home = free_port()
    stack = await run.start_stack("rubyctl", RUBY_HA_PORT=str(home))
    health = free_port()
    sink = await run.start("audit-sink", "live", RUNNING["audit-sink"])
    gateway = await run.start("gateway", "live", RUNNING["gateway"],
                              RUBY_HA_URL=f"ws://127.0.0.1:{home}/api/websocket",
                              RUBY_GATEWAY_HEALTH_PORT=str(health),
                              RUBY_GATEWAY_API_PORT=str(run.gateway_api_port))  # fmt: skip
    engine = await run.start("engine", "live", RUNNING["engine"])
    edge = await run.start_edge("live")
    await readyz(health, gateway)
    for name, service in (("audit-sink", sink), ("gateway", gateway), ("engine", engine)):
        await run.healthy(name, service)
    await run.api_through_the_edge(stack, gateway, edge)

    os.utime(ROOT / "services" / "engine" / "src" / "ruby_engine" / "__init__.py")  # a save
    await ready(printed(engine, "source changed (__init__.py): engine stopped (exit code 0)"),
                engine)  # fmt: skip
    await ready(printed(engine, RUNNING["engine"], times=2), engine)
    assert "source changed" not in sink.output() + gateway.output()
    for service in (edge, engine, gateway, sink, stack):
        assert service.stop() == 0, service.output()
    contained.clear()
