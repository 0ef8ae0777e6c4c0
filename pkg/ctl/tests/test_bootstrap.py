"""`rubyctl bootstrap` against a real OpenBao: everything once, then nothing; repairs; isolation."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from ruby_ctl.bootstrap import bootstrap, ca_key_path
from ruby_ctl.cli import main
from ruby_ctl.pki import EDGE, EDGE_CLIENT, LEAVES, hostnames, leaf_ok
from ruby_ctl.testing import Installation
from ruby_ctl.vault_admin import role_name
from ruby_natsx.credentials import is_user_seed, user_public_key
from ruby_natsx.permissions import IDENTITIES
from ruby_runtime.errors import VaultLoginRefusedError, VaultPermissionDeniedError
from ruby_runtime.vault import NATS_SEED_FIELD, VaultSession, nats_seed_path

SEED_SHAPE = re.compile(r"S[UAONCX][A-Z2-7]{55}")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _seed_in_vault(inst: Installation, identity: str) -> str:
    response = inst.bao.root_client().secrets.kv.v2.read_secret_version(
        path=nats_seed_path(inst.prefix, identity),
        mount_point="ruby",
        raise_on_deleted_version=True,
    )
    seed: str = response["data"]["data"][NATS_SEED_FIELD]
    return seed


def test_a_first_bootstrap_makes_everything_and_a_second_changes_nothing(
    fresh_installation: Installation,
) -> None:
    inst, state = fresh_installation, fresh_installation.state
    changes = "\n".join(inst.bootstrapped.changes)
    for identity in IDENTITIES:
        assert f"NKEY user of {identity}: created" in changes
        assert f"Vault policy {role_name(inst.prefix, identity)}: created" in changes
        assert f"Vault AppRole {role_name(inst.prefix, identity)}: created" in changes
        assert f"AppRole secret id of {identity}: issued" in changes
        assert _mode(state.role_id_file(identity)) == 0o600
        assert _mode(state.secret_id_file(identity)) == 0o600
    assert "local CA" in changes
    for leaf in LEAVES:
        assert f"{leaf.what} {state.pki.cert(leaf)}: issued" in changes
        assert _mode(state.pki.key(leaf)) == 0o600
        assert leaf_ok(state.pki, leaf)
    assert "nats-server authorization" in changes

    again = bootstrap(inst.bao.root_client(), state, inst.prefix)
    assert again.changes == ()
    assert again.summary == "nothing changed"
    assert again.public_keys == inst.bootstrapped.public_keys


def test_only_public_keys_leave_vault(fresh_installation: Installation) -> None:
    inst, state = fresh_installation, fresh_installation.state
    authorization = state.authorization.read_text()
    files = {p: p.read_text(errors="replace") for p in state.root.rglob("*") if p.is_file()}
    for identity in IDENTITIES:
        seed = _seed_in_vault(inst, identity)
        assert is_user_seed(seed)
        assert f'nkey: "{user_public_key(seed)}"' in authorization
        assert user_public_key(seed) == inst.bootstrapped.public_keys[identity]
        for path, text in files.items():
            assert seed not in text, path
    assert not [p for p, text in files.items() if SEED_SHAPE.search(text)]
    private = {p for p, text in files.items() if "PRIVATE KEY" in text}
    assert private == {state.pki.key(leaf) for leaf in LEAVES}, "the CA key lives in Vault"


def test_bootstrap_repairs_only_what_is_broken(fresh_installation: Installation) -> None:
    inst, state = fresh_installation, fresh_installation.state
    root = inst.bao.root_client()
    old_secret_id = state.secret_id_file("gateway").read_text()
    state.secret_id_file("gateway").unlink()
    root.sys.create_or_update_policy(
        role_name(inst.prefix, "engine"), 'path "ruby/*" { capabilities = ["read"] }\n'
    )
    root.auth.approle.create_or_update_approle(role_name(inst.prefix, "operator"), token_ttl=99)
    state.pki.server_cert.unlink()
    state.pki.key(EDGE_CLIENT).write_text(state.pki.key(LEAVES[0]).read_text())  # not its key

    result = bootstrap(root, state, inst.prefix)

    assert sorted(result.changes) == sorted(
        [
            f"AppRole secret id of gateway: issued to {state.secret_id_file('gateway')}",
            f"Vault policy {role_name(inst.prefix, 'engine')}: updated",
            f"Vault AppRole {role_name(inst.prefix, 'operator')}: updated",
            f"nats-server TLS certificate {state.pki.server_cert}: issued",
            f"{EDGE_CLIENT.what} {state.pki.cert(EDGE_CLIENT)}: issued",
        ]
    )
    assert result.public_keys == inst.bootstrapped.public_keys
    stale = state.root / "stale_secret_id"
    stale.write_text(old_secret_id)
    settings = inst.settings("gateway", RUBY_VAULT_SECRET_ID_FILE=str(stale)).vault
    with pytest.raises(VaultLoginRefusedError):
        VaultSession.login(settings, "gateway")  # re-issuing destroyed the lost secret id
    assert bootstrap(root, state, inst.prefix).changes == ()


def test_the_api_hostnames_are_added_to_traefiks_certificate_alone(
    fresh_installation: Installation,
) -> None:
    """RUBY_API_HOSTNAMES (the compose files publish the API): Traefik's certificate is issued
    again with those names too, once; no other certificate changes; fewer names keep it."""
    inst, state = fresh_installation, fresh_installation.state
    names = hostnames(" Ruby.Example.lan, 192.168.1.20,,ruby ")
    assert names == ("ruby.example.lan", "192.168.1.20", "ruby")
    assert not leaf_ok(state.pki, EDGE, names)

    result = bootstrap(inst.bao.root_client(), state, inst.prefix, api_hostnames=names)

    also = "ruby.example.lan, 192.168.1.20, ruby"
    assert result.changes == (f"{EDGE.what} {state.pki.cert(EDGE)}: issued (also for {also})",)
    cert = x509.load_pem_x509_certificate(state.pki.cert(EDGE).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "ruby.example.lan", "ruby"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "192.168.1.20",
    }
    again = bootstrap(inst.bao.root_client(), state, inst.prefix, api_hostnames=names)
    assert again.changes == ()
    assert bootstrap(inst.bao.root_client(), state, inst.prefix).changes == ()
    for bad in ("-ruby", "ruby_core", "a..b", "x" * 64):
        with pytest.raises(ValueError, match="neither a host name nor an IP address"):
            hostnames(bad)


def test_each_approle_reads_its_own_secrets_and_is_denied_the_others(
    fresh_installation: Installation,
) -> None:
    inst = fresh_installation
    for identity in IDENTITIES:
        with VaultSession.login(inst.settings(identity).vault, identity) as vault:
            own = vault.read(nats_seed_path(inst.prefix, identity), NATS_SEED_FIELD)
            assert user_public_key(own.reveal()) == inst.bootstrapped.public_keys[identity]
            for other in IDENTITIES:
                if other != identity:
                    with pytest.raises(VaultPermissionDeniedError, match=repr(identity)):
                        vault.read(nats_seed_path(inst.prefix, other), NATS_SEED_FIELD)
            with pytest.raises(VaultPermissionDeniedError):
                vault.read(ca_key_path(inst.prefix), "key")


def test_the_command_reports_nothing_changed_with_an_admin_token(
    fresh_installation: Installation,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inst = fresh_installation
    token = inst.bao.root_client().token
    monkeypatch.setenv("RUBY_VAULT_TOKEN", token)
    monkeypatch.setenv("RUBY_VAULT_ADDR", inst.bao.addr)
    code = main(["bootstrap", "--state-dir", str(inst.state.root), "--prefix", inst.prefix])
    out = capsys.readouterr().out
    assert code == 0
    assert out.rstrip().endswith("rubyctl bootstrap: nothing changed")
    for identity, key in inst.bootstrapped.public_keys.items():
        assert f"identity {identity}: nkey {key}" in out
    assert token not in out
