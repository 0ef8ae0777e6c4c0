"""Secrets never print; settings come from RUBY_* variables, with clear errors; bounded backoff."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from ruby_runtime.errors import SettingsError
from ruby_runtime.secret import Secret
from ruby_runtime.settings import ENVIRONMENT, ServiceSettings, event_loop_factory
from ruby_runtime.vault import AppRoleLogin, backoff_delays

VALUE = "".join(["hunter", "2-", "x" * 12])  # assembled: nothing for the secret scanner


def test_a_secret_never_shows_its_value() -> None:
    secret = Secret(VALUE, "nats seed of gateway")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}"):
        assert VALUE not in shown
        assert "[REDACTED]" in shown
    assert "nats seed of gateway" in repr(secret)
    assert secret.reveal() == VALUE
    assert VALUE not in repr([secret, {"k": secret}])
    with pytest.raises(AttributeError):
        secret._value = "x"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_a_secret_in_an_exception_or_a_log_line_stays_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret(VALUE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("read %s", secret)
    assert VALUE not in caplog.text
    assert VALUE not in str(ValueError(f"bad {secret}"))


def test_the_approle_credentials_read_from_files_are_secrets(tmp_path: Path) -> None:
    (tmp_path / "role_id").write_text(VALUE + "\n")
    (tmp_path / "secret_id").write_text(VALUE[::-1])
    login = AppRoleLogin.from_files(tmp_path / "role_id", tmp_path / "secret_id")
    assert login.role_id.reveal() == VALUE
    assert VALUE not in repr(login)
    assert VALUE[::-1] not in repr(login)
    with pytest.raises(SettingsError, match=r"no AppRole secret id in .*missing"):
        AppRoleLogin.from_files(tmp_path / "role_id", tmp_path / "missing")


def test_defaults_are_the_local_stack() -> None:
    s = ServiceSettings.from_env("gateway", {})
    assert s.prefix == "ruby"
    assert s.nats_url == "tls://127.0.0.1:4222"
    assert s.nats_ca_file == Path(".ruby/pki/ca.pem")
    assert s.vault.addr == "http://127.0.0.1:8200"
    assert s.vault.role_id_file == Path(".ruby/approle/gateway/role_id")
    assert s.vault.secret_id_file == Path(".ruby/approle/gateway/secret_id")
    assert s.vault.attempts == 5


def test_every_variable_is_read_and_documented() -> None:
    env = {
        "RUBY_STATE_DIR": "/srv/ruby",
        "RUBY_PREFIX": "casa",
        "RUBY_LOG_LEVEL": "debug",
        "RUBY_NATS_URL": "tls://nats.internal:4222",
        "RUBY_NATS_CA_FILE": "/etc/ruby/ca.pem",
        "RUBY_VAULT_ADDR": "https://vault.internal:8200/",
        "RUBY_VAULT_CA_FILE": "/etc/ruby/vault-ca.pem",
        "RUBY_VAULT_MOUNT": "secrets",
        "RUBY_VAULT_ROLE_ID_FILE": "/run/secrets/role_id",
        "RUBY_VAULT_SECRET_ID_FILE": "/run/secrets/secret_id",
        "RUBY_VAULT_ATTEMPTS": "3",
        "RUBY_VAULT_TIMEOUT": "2.5",
        "RUBY_EVENT_LOOP": "asyncio",
    }
    assert set(env) == set(ENVIRONMENT)
    s = ServiceSettings.from_env("engine", env)
    assert (s.state_dir, s.prefix, s.log_level) == (Path("/srv/ruby"), "casa", "DEBUG")
    assert (s.nats_url, s.nats_ca_file) == ("tls://nats.internal:4222", Path("/etc/ruby/ca.pem"))
    assert s.vault.addr == "https://vault.internal:8200"
    assert s.vault.ca_file == Path("/etc/ruby/vault-ca.pem")
    assert s.vault.mount == "secrets"
    assert s.vault.role_id_file == Path("/run/secrets/role_id")
    assert s.vault.secret_id_file == Path("/run/secrets/secret_id")
    assert (s.vault.attempts, s.vault.timeout) == (3, 2.5)
    assert s.event_loop == "asyncio"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RUBY_PREFIX", "a.b", "RUBY_PREFIX"),
        ("RUBY_LOG_LEVEL", "loud", "unknown log level"),
        ("RUBY_NATS_URL", "http://x:4222", "not a tls:// address"),
        ("RUBY_VAULT_ADDR", "ftp://x", "not an http"),
        ("RUBY_VAULT_ADDR", "http://vault.example.com:8200", "non-loopback"),
        ("RUBY_VAULT_ATTEMPTS", "many", "not a number"),
        ("RUBY_VAULT_ATTEMPTS", "0", "between 1 and 20"),
        ("RUBY_VAULT_TIMEOUT", "-1", "between"),
        ("RUBY_EVENT_LOOP", "tokio", "none of uvloop, asyncio"),
    ],
)
def test_an_invalid_variable_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        ServiceSettings.from_env("gateway", {name: value})
    assert name in str(raised.value)
    assert raised.value.exit_code == 78


def test_backoff_grows_is_capped_is_jittered_and_bounded() -> None:
    low = backoff_delays(6, base=0.2, cap=2.0, rng=lambda: 0.0)
    high = backoff_delays(6, base=0.2, cap=2.0, rng=lambda: 1.0)
    assert high == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0])
    assert low == pytest.approx([d / 2 for d in high])
    assert backoff_delays(1) == []
    assert sum(backoff_delays(5)) <= 0.2 + 0.4 + 0.8 + 1.6


def test_the_event_loop_setting() -> None:
    import uvloop  # the setting loads it lazily too

    assert event_loop_factory({}) is uvloop.new_event_loop
    assert event_loop_factory({"RUBY_EVENT_LOOP": " UVLOOP "}) is uvloop.new_event_loop
    assert event_loop_factory({"RUBY_EVENT_LOOP": "asyncio"}) is None
    with pytest.raises(SettingsError, match="RUBY_EVENT_LOOP: 'trio' is none of") as raised:
        event_loop_factory({"RUBY_EVENT_LOOP": "trio"})
    assert raised.value.exit_code == 78
