"""The Home Assistant the run drives: the real one from ``../shared/tools/ha/``, or the simulator.

Either is started by the run on a free port of 127.0.0.1 and stopped at its end; either gives a
WebSocket URL, a token (kept in memory, never printed) and the mirror pairs to use.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from chaos.model import Pair

REPO = Path(__file__).resolve().parents[2]
HA_TOOLS = Path(os.environ.get("RUBY_HA_TOOLS", REPO.parent / "shared" / "tools" / "ha")).resolve()
HA_DIR = Path(os.environ.get("HA_DIR", "/tmp/ha"))  # noqa: S108  # the HA tools' own default

REAL_PAIRS = (
    Pair("input_boolean.c", "input_boolean.d"),
    Pair("input_boolean.e", "input_boolean.motion"),
)
"""Entities of the tools' HA config; ``a`` and ``b`` belong to HA's own automations."""
SIM_PAIRS = (
    Pair("input_boolean.guest_mode", "input_boolean.vacation"),
    Pair("input_boolean.night_mode", "switch.fan"),
)
"""Entities of the simulator's default home (it has only three input_booleans)."""


class HomeError(RuntimeError):
    """Home Assistant could not be started (the message says why)."""


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but loopback."""
    return sorted(name for _, name in socket.if_nameindex()) == ["lo"]


def into_namespace(mark: str) -> NoReturn:
    """Re-execute this program inside a fresh network namespace with only loopback, ``mark``
    set in its environment (`HomeError` if it is set already: unshare did not isolate us)."""
    if os.environ.get(mark):
        raise HomeError("still not in a loopback-only network namespace after unshare -n")
    if shutil.which("unshare") is None:
        raise HomeError("unshare is missing: cannot run the real Home Assistant offline")
    sys.stdout.flush()
    os.environ[mark] = "1"
    script = 'ip link set lo up && exec "$@"'
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, *sys.argv])  # noqa: S606, S607  # ourselves again, by design


def choose_home(choice: str) -> str:
    """``real`` or ``sim`` for ``--ha auto|real|sim`` (auto: real when installed);
    `HomeError` when the real one is asked for and not installed."""
    kind = ("real" if real_ha_installed() else "sim") if choice == "auto" else choice
    if kind == "real" and not real_ha_installed():
        raise HomeError(
            f"no Home Assistant installed in {HA_DIR} (or no {HA_TOOLS}): "
            "install it with `make test-ha`, or use --ha sim"
        )
    return kind


def offline_for(kind: str, mark: str, say: Callable[[str], None]) -> None:
    """For the real Home Assistant, re-execute inside a loopback-only network namespace
    (no return), unless already in one."""
    if kind == "real" and not only_loopback():
        say("re-running inside a network namespace with only loopback (unshare -n)")
        into_namespace(mark)


def run_in_state_dir(
    program: str,
    prefix: str,
    keep: bool,
    main: Callable[[Path], Coroutine[Any, Any, int]],
    say: Callable[[str], None],
) -> int:
    """``asyncio.run(main(state_dir))`` in a fresh temporary state directory, removed after
    (kept with ``keep``): 1 when it could not run, 130 on Ctrl-C, 143 on SIGTERM (whatever
    was started was stopped on the way out)."""
    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return asyncio.run(main(state_dir))
    except (HomeError, RuntimeError, OSError) as exc:
        print(f"{program}: could not run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        return 143
    finally:
        if keep:
            say(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


def real_ha_installed() -> bool:
    """Whether ``$HA_DIR`` holds an installed Home Assistant and the tools to start it."""
    return (HA_DIR / "venv" / "bin" / "hass").exists() and (HA_TOOLS / "start.sh").exists()


@dataclass
class RealHome:
    """A real Home Assistant Core, started with ``start.sh PORT``, stopped with ``stop.sh``."""

    port: int
    token: str = field(default="", repr=False)
    version: str = "?"
    started: bool = False
    pairs: tuple[Pair, ...] = REAL_PAIRS
    label: str = "real Home Assistant"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HA_DIR": str(HA_DIR), "HA_PORT": str(self.port), "HA_SKIP_PIP": "1"}

    def _run(self, *command: str) -> str:
        done = subprocess.run(  # noqa: S603  # the shared HA tools, by absolute path
            command, env=self._env(), capture_output=True, text=True, timeout=240, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise HomeError(
                f"{Path(command[1]).name} failed ({done.returncode}): {' / '.join(tail)}"
            )
        return done.stdout

    def start(self, log: Path) -> None:
        """Start HA (``start.sh``'s output to ``log``) and get a token for it."""
        log.write_text(self._run("bash", str(HA_TOOLS / "start.sh"), str(self.port)))
        self.started = True
        python = str(HA_DIR / "venv" / "bin" / "python")
        url = f"http://127.0.0.1:{self.port}"
        self.token = self._run(python, str(HA_TOOLS / "get_token.py"), "--url", url).strip()

    def stop(self) -> str:
        if not self.started:
            return "not started"
        self.started = False
        try:
            return self._run("bash", str(HA_TOOLS / "stop.sh")).strip() or "stopped"
        except HomeError as exc:
            return str(exc)


@dataclass
class SimHome:
    """The Home Assistant simulator (``ruby-hasim``, its default home) as a process of ours."""

    port: int
    executable: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    version: str = "?"
    process: subprocess.Popen[bytes] | None = None
    pairs: tuple[Pair, ...] = SIM_PAIRS
    label: str = "Home Assistant simulator (ruby-hasim)"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/websocket"

    def start(self, log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # our own console script
                [self.executable, "--port", str(self.port)],
                env={**os.environ, "RUBY_HASIM_TOKEN": self.token},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while b" entities on " not in log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise HomeError(f"ruby-hasim did not start; see {log}")
            time.sleep(0.05)

    def stop(self) -> str:
        if self.process is None or self.process.poll() is not None:
            return "not running"
        self.process.send_signal(signal.SIGTERM)
        try:
            return f"stopped (exit code {self.process.wait(timeout=10)})"
        except subprocess.TimeoutExpired:
            self.process.kill()
            return f"killed (exit code {self.process.wait()})"


Home = RealHome | SimHome
