"""Each way a service can fail to start has its own message and its own exit code.

Against a real OpenBao and a real TLS + NKEY nats-server (``ruby_ctl.testing``): Vault
unreachable (after bounded, jittered retries), sealed, not initialised, login refused,
permission denied, secret missing; invalid settings; NATS refusing the connection.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from ruby_ctl.openbao import OpenBao, free_port
from ruby_ctl.pki import PkiPaths, new_ca
from ruby_ctl.testing import Installation
from ruby_natsx.connection import connect_service
from ruby_natsx.testing import eventually
from ruby_runtime import errors
from ruby_runtime.health import check, health_file
from ruby_runtime.startup import Started, run_service
from ruby_runtime.vault import nats_seed_path


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    logs: list[dict[str, object]]

    @property
    def reason(self) -> str:
        (failure,) = [r for r in self.logs if r["event"] == "cannot start"]
        assert failure["exit_code"] == self.code
        return str(failure["reason"])


async def _never(service: Started[Client]) -> int:
    raise AssertionError("the service must not get this far")


def start(environ: Mapping[str, str], identity: str = "gateway") -> Outcome:
    logs, err = io.StringIO(), io.StringIO()
    code = run_service(
        identity, _never, connect=connect_service, environ=environ, log_stream=logs, stderr=err
    )
    records = [json.loads(line) for line in logs.getvalue().splitlines()]
    return Outcome(code, err.getvalue(), records)


def test_vault_unreachable_is_retried_a_bounded_number_of_times(
    installation: Installation,
) -> None:
    addr = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    out = start(installation.environ(RUBY_VAULT_ADDR=addr, RUBY_VAULT_ATTEMPTS="3"))
    assert out.code == 81
    assert f"Vault at {addr} is unreachable: 3 attempts" in out.reason
    assert "Is it running?" in out.reason
    assert out.stderr == f"gateway: cannot start: {out.reason}\n"
    retries = [r for r in out.logs if r["event"] == "vault unreachable, retrying"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert time.monotonic() - began < 0.2 + 0.4 + 5  # the backoff is bounded


def test_a_sealed_or_uninitialised_vault(installation: Installation, tmp_path: Path) -> None:
    bao = OpenBao(tmp_path / "bao", port=0)
    bao.start()
    try:
        out = start(installation.environ(RUBY_VAULT_ADDR=bao.addr))
        assert out.code == 82
        assert "is not initialised" in out.reason
        bao.initialise()  # initialised, still sealed
        out = start(installation.environ(RUBY_VAULT_ADDR=bao.addr))
        assert out.code == 82
        assert f"Vault at {bao.addr} is sealed" in out.reason
        assert "unseal" in out.reason
    finally:
        bao.stop()


def test_a_refused_login(installation: Installation, tmp_path: Path) -> None:
    bogus = tmp_path / "secret_id"
    bogus.write_text("00000000-0000-4000-8000-000000000000\n")
    out = start(installation.environ(RUBY_VAULT_SECRET_ID_FILE=str(bogus)))
    assert out.code == 83
    assert "refused the AppRole login of 'gateway'" in out.reason
    assert "rubyctl bootstrap" in out.reason
    assert "00000000-0000-4000-8000-000000000000" not in out.reason + out.stderr


def test_permission_denied_when_given_another_identitys_credentials(
    installation: Installation,
) -> None:
    engine = installation.state
    out = start(
        installation.environ(
            RUBY_VAULT_ROLE_ID_FILE=str(engine.role_id_file("engine")),
            RUBY_VAULT_SECRET_ID_FILE=str(engine.secret_id_file("engine")),
        )
    )
    assert out.code == 84
    where = f"ruby/{nats_seed_path(installation.prefix, 'gateway')}"
    assert f"Vault denied 'gateway' reading {where}" in out.reason


def test_a_missing_secret(fresh_installation: Installation) -> None:
    inst = fresh_installation
    inst.bao.root_client().secrets.kv.v2.delete_metadata_and_all_versions(
        path=nats_seed_path(inst.prefix, "gateway"), mount_point="ruby"
    )
    out = start(inst.environ())
    assert out.code == 85
    assert f"no secret at ruby/{nats_seed_path(inst.prefix, 'gateway')}" in out.reason


def test_invalid_settings_and_missing_credentials(installation: Installation) -> None:
    out = start(installation.environ(RUBY_VAULT_ATTEMPTS="lots"))
    assert out.code == 78
    assert "RUBY_VAULT_ATTEMPTS: 'lots' is not a number" in out.reason
    out = start(installation.environ(RUBY_VAULT_ROLE_ID_FILE="/nonexistent/role_id"))
    assert out.code == 78
    assert "no AppRole role id in /nonexistent/role_id" in out.reason


def test_an_unknown_event_loop_is_refused_before_anything_starts(
    installation: Installation,
) -> None:
    out = start(installation.environ(RUBY_EVENT_LOOP="tokio"))
    assert out.code == 78
    assert "RUBY_EVENT_LOOP: 'tokio' is none of uvloop, asyncio" in out.stderr


def test_the_service_runs_on_uvloop_unless_told_asyncio(installation: Installation) -> None:
    seen: list[str] = []

    async def body(_: Started[Client]) -> int:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
        return 0

    for name in ("", "asyncio", "uvloop"):
        env = installation.environ(RUBY_EVENT_LOOP=name)
        assert run_service("gateway", body, connect=connect_service, environ=env) == 0
    assert seen == ["uvloop", "asyncio", "uvloop"]


def test_nats_refusing_the_connection(installation: Installation, tmp_path: Path) -> None:
    stranger = PkiPaths(tmp_path)
    new_ca(stranger, "a stranger")
    out = start(installation.environ(RUBY_NATS_CA_FILE=str(stranger.ca_cert)))
    assert out.code == 86
    assert "certificate is not trusted" in out.reason


def test_the_exit_codes_are_distinct_and_reach_the_process(installation: Installation) -> None:
    classes = (
        errors.SettingsError,
        errors.VaultError,
        errors.VaultUnreachableError,
        errors.VaultSealedError,
        errors.VaultLoginRefusedError,
        errors.VaultPermissionDeniedError,
        errors.SecretMissingError,
        errors.NatsRefusedError,
    )
    codes = [cls.exit_code for cls in classes]
    assert len(set(codes)) == len(codes)
    assert all(64 <= code < 126 for code in codes)  # clear of 1, 2, signals and sysexits' 64+
    addr = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        **installation.environ(RUBY_VAULT_ADDR=addr, RUBY_VAULT_ATTEMPTS="1"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ruby_gateway.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 81, done.stderr
    assert done.stderr.startswith(f"gateway: cannot start: Vault at {addr} is unreachable")


def test_a_running_service_keeps_a_heartbeat_that_its_healthcheck_reads(
    installation: Installation, tmp_path: Path
) -> None:
    state = installation.state
    env = installation.environ(  # its own state directory for the heartbeat, the same credentials
        RUBY_STATE_DIR=str(tmp_path),
        RUBY_NATS_CA_FILE=str(state.pki.ca_cert),
        RUBY_VAULT_ROLE_ID_FILE=str(state.role_id_file("gateway")),
        RUBY_VAULT_SECRET_ID_FILE=str(state.secret_id_file("gateway")),
    )
    beat = health_file(tmp_path, "gateway")
    seen: list[str | None] = []

    async def body(_: Started[Client]) -> int:
        await eventually(beat.exists, within=10, message="the heartbeat file")
        seen.append(check(beat))
        return 0

    assert run_service("gateway", body, connect=connect_service, environ=env) == 0
    assert seen == [None]  # healthy while it ran
    err = io.StringIO()
    code = run_service("gateway", _never, connect=connect_service, environ=env,
                       argv=["--healthcheck"], stderr=err)  # fmt: skip
    assert code == 1  # stopped cleanly: the heartbeat is gone
    assert "no heartbeat" in err.getvalue()
    beat.parent.mkdir(parents=True, exist_ok=True)
    beat.touch()
    err = io.StringIO()
    code = run_service("gateway", _never, connect=connect_service, environ=env,
                       argv=["--healthcheck"], stderr=err)  # fmt: skip
    assert (code, err.getvalue().strip()) == (0, "gateway: healthy")
    os.utime(beat, (time.time() - 60, time.time() - 60))
    assert "60 s old" in (check(beat) or "")
