"""The service processes ``rubyctl up`` runs beside the servers: started, watched, stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ruby_natsx.server import stop_process


@dataclass
class Child:
    """One child process with its output in ``log_path``."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own console scripts
                list(self.argv),
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM by PID, wait for a graceful exit, SIGKILL if it lingers."""
        return stop_process(self.process, timeout)


def console_script(name: str) -> str:
    """A console script of this environment (``ruby-gateway``), beside the interpreter."""
    return str(Path(sys.executable).parent / name)
