"""AppDaemon, the peer: installed from PyPI into its own virtual environment, run as our child.

The virtual environment lives in the bench's work directory (``.bench/`` by default) and is
made once per AppDaemon version; a later run reuses it, so only the first run needs PyPI (and it
happens before the run moves into a network namespace with only loopback). The mirror app is
the plainest AppDaemon app a user would write: ``listen_state`` on the source, a synchronous
callback (AppDaemon runs it in its thread pool) calling ``<domain>/turn_<state>`` on the mirror.
The Home Assistant token reaches AppDaemon in an environment variable (``!env_var``), never in a
file of the work directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.model import Pair

VERSION = "4.5.13"
"""The AppDaemon measured (the one of ../shared/PERF-NOTES.md); ``--appdaemon`` changes it."""
TOKEN_VARIABLE = "RUBY_PEERS_HA_TOKEN"  # noqa: S105  # a variable name, not a token
READY_LINE = "ruby-bench mirror ready"
"""What the mirror app logs once it listens: AppDaemon, its HASS plugin and the app are up."""
READY_WITHIN = 90.0

APP = '''\
"""The benchmark's mirror: every on / off of the source, copied onto the mirror."""

from appdaemon.plugins.hass.hassapi import Hass


class Mirror(Hass):
    def initialize(self):
        self.mirror = self.args["mirror"]
        self.domain = self.mirror.split(".", 1)[0]
        self.listen_state(self.copy, self.args["source"])
        self.log("{ready}")

    def copy(self, entity, attribute, old, new, kwargs):
        if new in ("on", "off"):
            self.call_service(f"{{self.domain}}/turn_{{new}}", entity_id=self.mirror)
'''


class AppDaemonError(RuntimeError):
    """AppDaemon could not be installed or started (the message says why)."""


def venv_of(work: Path, version: str) -> Path:
    return work / f"appdaemon-{version}"


def install(work: Path, version: str, say: Callable[[str], None] = print) -> Path:
    """The virtual environment holding ``appdaemon==version`` (made now if it is missing)."""
    venv = venv_of(work, version)
    executable = venv / "bin" / "appdaemon"
    if executable.exists():
        return venv
    say(f"installing AppDaemon {version} from PyPI into {venv} (once; about 20 s)")
    work.mkdir(parents=True, exist_ok=True)
    for command in (
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", f"appdaemon=={version}"],
    ):
        done = subprocess.run(  # noqa: S603  # venv and pip, by absolute path
            command, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise AppDaemonError(f"{' '.join(command[:3])} failed: {' / '.join(tail)}")
    if not executable.exists():
        raise AppDaemonError(f"pip installed AppDaemon {version} without {executable}")
    return venv


def configure(conf: Path, ha_http_url: str, pair: Pair) -> None:
    """AppDaemon's configuration directory: ``appdaemon.yaml`` (HASS plugin, no HTTP API),
    the mirror app and its ``apps.yaml``."""
    apps = conf / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    logs = conf / "logs"
    logs.mkdir(exist_ok=True)
    (conf / "appdaemon.yaml").write_text(
        "appdaemon:\n"
        "  time_zone: UTC\n"
        "  latitude: 52.37\n"
        "  longitude: 4.89\n"
        "  elevation: 0\n"
        "  plugins:\n"
        "    HASS:\n"
        "      type: hass\n"
        f"      ha_url: {ha_http_url}\n"
        f"      token: !env_var {TOKEN_VARIABLE}\n"
        "logs:\n"
        f"  main_log: {{filename: {logs / 'main.log'}}}\n"
        f"  error_log: {{filename: {logs / 'error.log'}}}\n"
    )
    (apps / "mirror.py").write_text(APP.format(ready=READY_LINE))
    (apps / "apps.yaml").write_text(
        f"mirror:\n  module: mirror\n  class: Mirror\n"
        f"  source: {pair.source}\n  mirror: {pair.mirror}\n"
    )


@dataclass
class AppDaemon:
    """One AppDaemon process, configured in ``conf``, stopped by its PID."""

    venv: Path
    conf: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.conf / "logs" / "main.log"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, token: str) -> None:
        """Start AppDaemon and wait until the mirror app says it listens."""
        with (self.conf / "appdaemon.out").open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # AppDaemon from its venv
                [str(self.venv / "bin" / "appdaemon"), "-c", str(self.conf)],
                env={**_clean_env(), TOKEN_VARIABLE: token},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_WITHIN
        while not (self.log.exists() and READY_LINE in self.log.read_text(errors="replace")):
            if self.process.poll() is not None:
                raise AppDaemonError(f"AppDaemon exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise AppDaemonError(f"AppDaemon not ready in {READY_WITHIN:.0f} s: {self.tail()}")
            time.sleep(0.2)

    def tail(self, n: int = 3) -> str:
        lines: list[str] = []
        for path in (self.conf / "logs" / "error.log", self.log, self.conf / "appdaemon.out"):
            if path.exists():
                lines += path.read_text(errors="replace").strip().splitlines()[-n:]
        return " / ".join(lines[-n:]) or "(no output)"

    def stop(self) -> str:
        if self.process is None or self.process.poll() is not None:
            return "not running"
        self.process.send_signal(signal.SIGTERM)
        try:
            return f"stopped (exit code {self.process.wait(timeout=20)})"
        except subprocess.TimeoutExpired:
            self.process.kill()
            return f"killed (exit code {self.process.wait()})"


def _clean_env() -> dict[str, str]:
    """Our environment without our virtual environment's and Ruby Core's variables."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RUBY_")}
