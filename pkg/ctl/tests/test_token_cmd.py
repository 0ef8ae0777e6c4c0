"""`rubyctl token create | ls | revoke` against the tests' secured installation (ADR-0020): the
token is printed once and only its digest is kept; names, scopes and lifetimes are checked;
creating and revoking are audited without the token; the gateway may read the bucket, not
write it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NotFoundError

from ruby_ctl.cli import main
from ruby_ctl.testing import Installation
from ruby_natsx.kvread import read_bucket
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.topology import API_TOKENS, AUDIT, GATEWAY
from ruby_runtime.api_tokens import matches, token_id
from ruby_schemas.api_tokens import Scope, read_token_record

T = TypeVar("T")


@pytest.fixture
def tokens(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """``rubyctl token ...`` as the operator of the installation; (exit code, stdout, stderr).
    Each test gets its own prefix of token names (the installation is shared)."""
    for name, value in installation.environ().items():
        monkeypatch.setenv(name, value)

    def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main(["token", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def as_identity(inst: Installation, identity: str, fn: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        nc = await inst.connect(identity)
        try:
            return await fn(nc)
        finally:
            await nc.drain()

    return asyncio.run(go())


def test_a_token_is_shown_once_and_only_its_digest_is_kept(
    installation: Installation,
    tokens: Callable[..., tuple[int, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = tokens(capsys, "create", "dash-once", "--scope", "read", "--ttl", "30d")
    assert code == 0, err
    token = out.strip()
    found = token_id(token)
    assert found is not None, out
    assert "shown this once" in err
    assert token not in err

    bucket = installation.topology.bucket(API_TOKENS).bucket
    stored = as_identity(installation, GATEWAY, lambda nc: read_bucket(nc, bucket))
    record = read_token_record(stored[found])
    assert (record.name, record.scope) == ("dash-once", Scope.READ)
    assert matches(token, record.digest)
    assert token.encode() not in b"".join(stored.values())
    assert record.expires is not None
    assert timedelta(days=29) < record.expires - datetime.now(UTC) <= timedelta(days=30)

    code, out, _ = tokens(capsys, "ls")
    line = next(line for line in out.splitlines() if line.startswith("dash-once "))
    assert found in line
    assert "read" in line
    assert line.endswith("active")
    assert token not in out
    assert record.digest not in out
    code, out, _ = tokens(capsys, "ls", "--json")
    shown = [json.loads(line) for line in out.splitlines()]
    mine = next(s for s in shown if s["name"] == "dash-once")
    assert "digest" not in mine
    assert mine["state"] == "active"


def test_an_active_name_is_refused_until_it_is_revoked(
    installation: Installation,
    tokens: Callable[..., tuple[int, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert tokens(capsys, "create", "phone-x", "--scope", "control")[0] == 0
    code, _, err = tokens(capsys, "create", "phone-x", "--scope", "admin")
    assert code == 1
    assert "active token already" in err
    code, out, _ = tokens(capsys, "revoke", "phone-x")
    assert code == 0
    assert "revoked phone-x" in out
    code, _, err = tokens(capsys, "revoke", "phone-x")
    assert code == 1
    assert "no active token is called 'phone-x'" in err
    code, out, _ = tokens(capsys, "ls")
    assert next(line for line in out.splitlines() if line.startswith("phone-x ")).endswith(
        "revoked"
    )
    assert tokens(capsys, "create", "phone-x", "--scope", "admin", "--ttl", "never")[0] == 0

    async def audit_records(nc: Client) -> list[dict[str, object]]:
        """Every record in AUDIT, read by sequence (no consumer may be created on it)."""
        js = nc.jetstream()
        stream = installation.topology.stream(AUDIT).name
        last = (await js.stream_info(stream)).state.last_seq
        found = []
        for seq in range(1, last + 1):
            with contextlib.suppress(NotFoundError):  # a sequence the stream no longer has
                found.append(json.loads((await js.get_msg(stream, seq)).data or b"{}")["data"])
        return found

    records = as_identity(installation, OPERATOR, audit_records)
    mine = [
        (r["action"], r["details"])
        for r in records
        if r["target"] == "api_token:phone-x" and r["actor"] == f"service:{OPERATOR}"
    ]
    assert [(action, details["scope"]) for action, details in mine] == [  # type: ignore[index]
        ("token.created", "control"),
        ("token.revoked", "control"),
        ("token.created", "admin"),
    ]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["create", "a b", "--scope", "read"], "not a token name"),
        (["create", "ok", "--scope", "root"], "invalid Scope value"),
        (["create", "ok", "--scope", "read", "--ttl", "soon"], "not a duration"),
        (["create", "ok"], "the following arguments are required: --scope"),
    ],
)
def test_bad_input_is_a_usage_error(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", *argv])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_only_the_operator_writes_tokens(installation: Installation) -> None:
    bucket = installation.topology.bucket(API_TOKENS).bucket

    async def forge(nc: Client) -> None:
        await nc.jetstream().publish(f"$KV.{bucket}.0123456789ab", b"{}", timeout=2)

    for identity in (GATEWAY, "engine", "audit_sink"):
        with pytest.raises((APIError, NatsTimeoutError)):
            as_identity(installation, identity, forge)
