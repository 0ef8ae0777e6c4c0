"""The `ruby-hasim` command: serves a home until Ctrl-C or SIGTERM, then exits 0."""

import signal
import subprocess
import sys

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_serves_until_told_to_stop(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruby_hasim.main", "--port", "0", "--generate", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "20 entities on ws://127.0.0.1:" in line
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
