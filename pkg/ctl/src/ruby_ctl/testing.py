"""Pytest fixtures for the secure stack: a real OpenBao and a bootstrapped, TLS + NKEY NATS.

Load with ``-p ruby_ctl.testing`` (the root ``pyproject.toml`` does). Fixtures:

- ``openbao``: one real OpenBao for the session (raft in a temporary directory, free ports
  on 127.0.0.1), initialised and unsealed, stopped by PID at the end. Session-wide because it
  takes a second or two to elect itself.
- ``installation``: one installation for the session, bootstrapped into ``openbao`` with a
  fresh prefix and state directory, with its nats-server (TLS, one NKEY user per identity,
  permissions from ``ruby_natsx.permissions``) running and the topology applied by the
  operator. ``installation.connect(identity)`` connects the way that identity does.
- ``fresh_installation``: the same, bootstrapped for one test only (Vault state only; no
  nats-server), for tests that break or repair things.
- ``start_up``: starts `rubyctl up` as a process (`UpProcess`), stopped like Ctrl-C at the
  end of the test.

Secrets are fetched at run time from Vault (through the AppRole of the identity, as the
services do); nothing secret is written into a test file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.aio.client import Client

from ruby_ctl.bootstrap import BootstrapResult, StatePaths, bootstrap
from ruby_ctl.openbao import OpenBao
from ruby_ctl.vault_admin import write_fields
from ruby_natsx.apply import apply_consumer, apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.permissions import IDENTITIES, OPERATOR
from ruby_natsx.server import NatsServer, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import API_TOKENS, AUDIT_SINK, Topology, topology
from ruby_runtime.api_tokens import digest, new_token
from ruby_runtime.secret import Secret
from ruby_runtime.settings import ServiceSettings
from ruby_runtime.vault import HA_TOKEN_FIELD, fetch_nats_seed, ha_token_path
from ruby_schemas.api_tokens import ApiTokenRecord, Scope


@dataclass
class Installation:
    """A bootstrapped installation in a temporary state directory."""

    bao: OpenBao
    state: StatePaths
    prefix: str
    bootstrapped: BootstrapResult
    server: NatsServer | None = None
    _seeds: dict[str, Secret] = field(default_factory=dict, repr=False)

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)

    @property
    def topology(self) -> Topology:
        return topology(self.subjects)

    @property
    def nats_url(self) -> str:
        if self.server is None:
            raise RuntimeError("this installation runs no nats-server")
        return self.server.url

    def environ(self, **overrides: str) -> dict[str, str]:
        """The ``RUBY_*`` variables a service of this installation starts with."""
        env = {
            "RUBY_STATE_DIR": str(self.state.root),
            "RUBY_PREFIX": self.prefix,
            "RUBY_VAULT_ADDR": self.bao.addr,
            "RUBY_VAULT_ATTEMPTS": "2",
        }
        if self.server is not None:
            env["RUBY_NATS_URL"] = self.server.url
        return {**env, **overrides}

    def settings(self, identity: str, **overrides: str) -> ServiceSettings:
        return ServiceSettings.from_env(identity, self.environ(**overrides))

    def store_ha_token(self, token: str) -> None:
        """What an operator stores once: the gateway's Home Assistant token, in Vault."""
        write_fields(
            self.bao.root_client(),
            self.settings("gateway").vault.mount,
            ha_token_path(self.prefix),
            {HA_TOKEN_FIELD: Secret(token, "ha token")},
        )

    def seed(self, identity: str) -> Secret:
        """The identity's NKEY seed, read from Vault with its own AppRole (cached)."""
        if identity not in self._seeds:
            self._seeds[identity] = fetch_nats_seed(self.settings(identity))
        return self._seeds[identity]

    async def connect(self, identity: str, name: str | None = None) -> Client:
        """Connect as ``identity``: TLS against the CA, its NKEY, its own inbox."""
        seed = await asyncio.to_thread(self.seed, identity)
        return await connect(
            NatsSettings(
                url=self.nats_url,
                name=name or f"test-{identity}",
                ca_file=self.state.pki.ca_cert,
                nkey_seed=seed.reveal(),
                identity=identity,
            )
        )


def _installation(bao: OpenBao, root: Path) -> Installation:
    state = StatePaths(root)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    return Installation(bao, state, prefix, bootstrap(bao.root_client(), state, prefix))


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    bao = OpenBao(tmp_path_factory.mktemp("openbao"), port=0)
    bao.start_unsealed()
    yield bao
    bao.stop()


@contextlib.contextmanager
def _serving(inst: Installation) -> Iterator[Installation]:
    """Start the installation's TLS + NKEY nats-server and apply its topology as the operator,
    then the audit sink's durable as the audit sink (it creates its own, as in production)."""
    inst.server = NatsServer(
        ServerConfig(
            state_dir=inst.state.nats,
            tls=TlsFiles(inst.state.pki.server_cert, inst.state.pki.server_key),
            extra=inst.state.authorization.read_text(),
        )
    )
    inst.server.start()
    try:

        async def apply() -> None:
            nc = await inst.connect(OPERATOR, name="test-apply")
            try:
                await apply_topology(nc.jetstream(), inst.topology, operator=True)
            finally:
                await nc.close()
            nc = await inst.connect(AUDIT_SINK, name="test-apply-sink")
            try:
                await apply_consumer(nc.jetstream(), inst.topology.consumer(AUDIT_SINK))
            finally:
                await nc.close()

        asyncio.run(apply())
        yield inst
    finally:
        inst.server.stop()


@pytest.fixture(scope="session")
def installation(
    openbao: OpenBao, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    """One bootstrapped installation with its nats-server, shared by the session's tests."""
    with _serving(_installation(openbao, tmp_path_factory.mktemp("installation"))) as inst:
        yield inst


@pytest.fixture
def secure_installation(openbao: OpenBao, tmp_path: Path) -> Iterator[Installation]:
    """A test's own bootstrapped installation and nats-server: nothing shared with others."""
    with _serving(_installation(openbao, tmp_path / "state")) as inst:
        yield inst


@pytest.fixture
def fresh_installation(openbao: OpenBao, tmp_path: Path) -> Installation:
    return _installation(openbao, tmp_path / "state")


# --- `rubyctl up` as a process ------------------------------------------------------------

UP_STOPPED = r"^rubyctl up: (\S+) (?:stopped|had exited) \(exit code (-?\d+)"


PORCH_RULE = """\
rules:
  - id: porch_light
    description: Light the hallway when motion is seen.
    triggers: [{kind: state, entity_id: binary_sensor.hallway_motion, to: "on"}]
    actions: [{kind: call, service: light.turn_on, target: {entity_id: light.hallway}}]
"""
"""One rule for the demo home, for a `rubyctl up` under test."""


def porch_rules(tmp_path: Path) -> Path:
    """``tmp_path/rules`` holding `PORCH_RULE` as ``porch.yaml``: a rules directory for
    `UpProcess`."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "porch.yaml").write_text(PORCH_RULE)
    return rules


class CommandProcess:
    """A running ``rubyctl`` command and the lines it printed (stdout and stderr), each with
    when it was read."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ruby_ctl", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self.read_at: list[float] = []
        """``time.monotonic()`` when each line was read."""

    def read_until(self, marker: str) -> str:
        """Read lines until one contains ``marker`` (a regular expression); that line. Fails if
        the command exits first.

        No clock of the test's own: how long a start may take is `rubyctl up`'s to decide (each
        service gets ``READY_WITHIN`` seconds, then it says which one was not ready and exits),
        and a start on a busy machine takes longer than on an idle one. pytest's timeout is the
        backstop for a process that hangs without a word.
        """
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.read_at.append(time.monotonic())
            if re.search(marker, line):
                return self.lines[-1]
        pytest.fail(f"{marker!r} never printed; output:\n" + "\n".join(self.lines))

    def find(self, pattern: str) -> re.Match[str]:
        """The first line matching ``pattern``."""
        for line in self.lines:
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matches {pattern!r}:\n" + "\n".join(self.lines))

    def last(self, pattern: str) -> re.Match[str]:
        """The last line read so far matching ``pattern``."""
        for line in reversed(self.lines):
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matches {pattern!r}:\n" + "\n".join(self.lines))

    def interrupt(self) -> int:
        """Ctrl-C; its exit code once it has stopped everything."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self, timeout: float = 60) -> int:
        """Its exit code, once it has exited; the rest of its lines are read."""
        out, _ = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            self.lines.append(line)
            self.read_at.append(time.monotonic())
        return self.proc.returncode

    def kill(self) -> None:
        """Stop it the way a user does (Ctrl-C), so its children stop too; SIGKILL last."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class UpProcess(CommandProcess):
    """A running `rubyctl up` (every port free, monitoring off, unless ``extra`` says other
    flags: later flags win)."""

    def __init__(self, state_dir: Path, rules: Path, *extra: str) -> None:
        self.state_dir = state_dir
        zero = ("--nats-port", "--vault-port", "--ha-port", "--gateway-port", "--api-port",
                "--api-http-port")  # fmt: skip
        super().__init__(
            "up", "--state-dir", str(state_dir),
            *(arg for flag in zero for arg in (flag, "0")), "--http-port", "off",
            "--rules", str(rules), *extra,
        )  # fmt: skip

    def keys(self) -> dict[str, str]:
        """The NKEY public key printed for each identity."""
        return {i: self.find(rf"identity {i}: nkey (U[A-Z2-7]{{55}})").group(1) for i in IDENTITIES}

    def operator_env(self) -> dict[str, str]:
        """The ``RUBY_*`` settings the operator reaches this stack with."""
        return {
            "RUBY_STATE_DIR": str(self.state_dir),
            "RUBY_NATS_URL": self.find(r"listening on (tls://127\.0\.0\.1:\d+)").group(1),
            "RUBY_VAULT_ADDR": self.find(r"openbao pid \d+ on (http://127\.0\.0\.1:\d+)").group(1),
        }

    def pids(self) -> dict[str, int]:
        """The PID of each process it runs, from its PID files (``<state>/run/<name>.pid``)."""
        return {
            path.stem: int(path.read_text())
            for path in sorted((self.state_dir / "run").glob("*.pid"))
        }

    def stopped(self) -> list[tuple[str, int]]:
        """The processes it said it stopped, in order, with their exit codes."""
        return [
            (m.group(1), int(m.group(2)))
            for line in self.lines
            if (m := re.match(UP_STOPPED, line))
        ]


@pytest.fixture
def start_up() -> Iterator[type[UpProcess]]:
    """`UpProcess`, each one stopped (Ctrl-C) at the end of the test."""
    started: list[UpProcess] = []

    class Tracked(UpProcess):
        def __init__(self, state_dir: Path, rules: Path, *extra: str) -> None:
            super().__init__(state_dir, rules, *extra)
            started.append(self)

    yield Tracked
    for up in started:
        up.kill()


def load_compose(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """A compose file with its ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` filled
    in from ``env`` as Compose does (`ValueError` for a required one that is missing)."""
    doc = yaml.safe_load(path.read_text())
    result: dict[str, Any] = _interpolate(doc, env)
    return result


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, through the tree."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, word = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name} is required: {word}")
        return word

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


async def issue_token(
    operator: Client,
    inst: Installation,
    name: str,
    scope: Scope,
    *,
    expires: datetime | None = None,
    revoked: datetime | None = None,
) -> str:
    """A token of ``inst`` written to its bucket as `rubyctl token create` writes it (by the
    operator connection ``operator``); the token."""
    token_id, token = new_token()
    record = ApiTokenRecord(
        id=token_id,
        name=name,
        scope=scope,
        digest=digest(token.reveal()),
        created=datetime.now(UTC),
        expires=expires,
        revoked=revoked,
    )
    kv = await operator.jetstream().key_value(inst.topology.bucket(API_TOKENS).bucket)
    await kv.put(token_id, record.model_dump_json().encode())
    return token.reveal()
