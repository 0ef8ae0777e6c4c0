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

Secrets are fetched at run time from Vault (through the AppRole of the identity, as the
services do); nothing secret is written into a test file.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client

from ruby_ctl.bootstrap import BootstrapResult, StatePaths, bootstrap
from ruby_ctl.openbao import OpenBao
from ruby_natsx.apply import apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.server import NatsServer, ServerConfig, TlsFiles
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import Topology, topology
from ruby_runtime.secret import Secret
from ruby_runtime.settings import ServiceSettings
from ruby_runtime.vault import fetch_nats_seed


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
    """Start the installation's TLS + NKEY nats-server and apply its topology as the operator."""
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
                await apply_topology(nc.jetstream(), inst.topology)
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
