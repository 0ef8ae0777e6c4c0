"""``rubyctl bootstrap``: make an installation's identities, secrets and TLS right, idempotently.

For each identity (gateway, engine, audit_sink, operator) an NKEY user whose seed lives only in
Vault KV v2 (``<prefix>/<identity>/nats``), a policy that reads only that identity's folder and
an AppRole bound to it, whose role id and secret id are kept for the local services in 0600
files under ``<state>/approle/<identity>/`` (production injects them instead). A local CA
(its key in Vault) and the certificates it signs under ``<state>/pki/`` (`pki.LEAVES`:
nats-server's, Traefik's, Traefik's client certificate to the gateway, the gateway API's).
And nats-server's ``authorization {}`` block, rendered from
``ruby_natsx.permissions`` with public keys only, in ``<state>/nats/authorization.conf``.

Everything already right is left alone; the result lists what changed (an audit-able action:
issue 7 records it), and a second run reports that nothing changed (ADR-0015, ADR-0005).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import hvac
import hvac.exceptions
import requests

from ruby_ctl import args as cli_args
from ruby_ctl import pki, vault_admin
from ruby_ctl.audit_spool import spool_bootstrap
from ruby_ctl.files import read_text, write_private, write_public
from ruby_ctl.openbao import OpenBaoError
from ruby_natsx.credentials import is_user_seed, new_user_seed, user_public_key
from ruby_natsx.permissions import IDENTITIES, permissions, render_authorization
from ruby_natsx.subjects import Subjects
from ruby_runtime.logging import configure_logging
from ruby_runtime.secret import Secret
from ruby_runtime.settings import DEFAULT_VAULT_MOUNT, approle_dir
from ruby_runtime.vault import NATS_SEED_FIELD, nats_seed_path

CA_KEY_FIELD: Final = "key"


@dataclass(frozen=True)
class StatePaths:
    """Where the local stack keeps its state (``.ruby/`` by default)."""

    root: Path

    @property
    def pki(self) -> pki.PkiPaths:
        return pki.PkiPaths(self.root / "pki")

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def authorization(self) -> Path:
        return self.nats / "authorization.conf"

    @property
    def openbao(self) -> Path:
        return self.root / "openbao"

    def role_id_file(self, identity: str) -> Path:
        return approle_dir(self.root, identity) / "role_id"

    def secret_id_file(self, identity: str) -> Path:
        return approle_dir(self.root, identity) / "secret_id"


@dataclass(frozen=True)
class BootstrapResult:
    """What bootstrap changed (empty: nothing) and the identities' public keys."""

    changes: tuple[str, ...]
    public_keys: Mapping[str, str]

    @property
    def summary(self) -> str:
        n = len(self.changes)
        return "nothing changed" if not n else f"{n} change{'s' if n > 1 else ''}"


def ca_key_path(prefix: str) -> str:
    """Where the local CA's private key lives in Vault (no identity's policy covers it)."""
    return f"{prefix}/pki/ca"


def bootstrap(
    vault: hvac.Client,
    state: StatePaths,
    prefix: str,
    *,
    mount: str = DEFAULT_VAULT_MOUNT,
    audit_break_glass: bool = False,
    api_hostnames: Sequence[str] = (),
) -> BootstrapResult:
    """Make everything right for installation ``prefix``; return what changed.

    ``vault`` must carry an administrator's token. Safe to run again at any time; not safe to
    run twice concurrently on one installation. ``audit_break_glass`` renders an authorization
    that lets the operator update AUDIT's configuration (only ``rubyctl up
    --audit-break-glass`` asks for it, and renders the locked one again when done); every
    rendering that changes the file is a recorded change. ``api_hostnames``: the names
    Traefik's certificate carries besides localhost and 127.0.0.1 (``RUBY_API_HOSTNAMES``).
    """
    changes: list[str | None] = [
        vault_admin.ensure_kv_mount(vault, mount),
        vault_admin.ensure_approle_auth(vault),
    ]
    public_keys: dict[str, str] = {}
    for identity in IDENTITIES:
        seed, change = _ensure_seed(vault, mount, prefix, identity)
        public_keys[identity] = user_public_key(seed.reveal())
        changes.append(change)
    changes += _ensure_tls(vault, mount, prefix, state.pki, api_hostnames)
    for identity in IDENTITIES:
        changes += _ensure_approle(vault, mount, prefix, identity, state)
    perms = permissions(Subjects(prefix), break_glass=audit_break_glass)
    text = render_authorization(perms, public_keys, installation=prefix)
    if write_public(state.authorization, text):
        how = "AUDIT break-glass: the operator may update AUDIT" if audit_break_glass else "locked"
        changes.append(f"nats-server authorization {state.authorization}: written ({how})")
    done = tuple(c for c in changes if c)
    spool_bootstrap(state.root, prefix, done)  # audited once NATS runs (`rubyctl up`)
    return BootstrapResult(done, public_keys)


def _ensure_seed(
    vault: hvac.Client, mount: str, prefix: str, identity: str
) -> tuple[Secret, str | None]:
    path = nats_seed_path(prefix, identity)
    seed = vault_admin.read_field(vault, mount, path, NATS_SEED_FIELD)
    if seed is not None and is_user_seed(seed.reveal()):
        return seed, None
    seed = Secret(new_user_seed(), f"nats seed of {identity}")
    vault_admin.write_fields(vault, mount, path, {NATS_SEED_FIELD: seed})
    return seed, f"NKEY user of {identity}: created (seed in Vault at {mount}/{path})"


def _ensure_tls(
    vault: hvac.Client, mount: str, prefix: str, paths: pki.PkiPaths, api_hostnames: Sequence[str]
) -> list[str]:
    changes = []
    ca_key = vault_admin.read_field(vault, mount, ca_key_path(prefix), CA_KEY_FIELD)
    if ca_key is None or not pki.ca_matches(paths, pki.CaKey(ca_key.reveal())):
        new_key = pki.new_ca(paths, prefix)
        vault_admin.write_fields(
            vault, mount, ca_key_path(prefix), {CA_KEY_FIELD: Secret(new_key.reveal(), "CA key")}
        )
        ca_key = Secret(new_key.reveal(), "CA key")
        changes.append(f"local CA {paths.ca_cert}: created (its key in Vault)")
    for leaf in pki.LEAVES:
        names = api_hostnames if leaf is pki.EDGE else ()
        if not pki.leaf_ok(paths, leaf, names):
            pki.issue_leaf(paths, pki.CaKey(ca_key.reveal()), leaf, names)
            also = f" (also for {', '.join(names)})" if names else ""
            changes.append(f"{leaf.what} {paths.cert(leaf)}: issued{also}")
    return changes


def _ensure_approle(
    vault: hvac.Client, mount: str, prefix: str, identity: str, state: StatePaths
) -> list[str | None]:
    name = vault_admin.role_name(prefix, identity)
    changes = [
        vault_admin.ensure_policy(vault, name, vault_admin.policy_text(mount, prefix, identity)),
        vault_admin.ensure_approle(vault, name, policy=name),
    ]
    role_id = vault_admin.role_id(vault, name)
    if write_private(state.role_id_file(identity), role_id.reveal() + "\n"):
        changes.append(f"AppRole role id of {identity}: written to {state.role_id_file(identity)}")
    current = read_text(state.secret_id_file(identity))
    if current is None or not vault_admin.secret_id_valid(vault, name, Secret(current)):
        secret_id = vault_admin.reissue_secret_id(vault, name)
        write_private(state.secret_id_file(identity), secret_id.reveal() + "\n")
        changes.append(
            f"AppRole secret id of {identity}: issued to {state.secret_id_file(identity)}"
        )
    return changes


# --- the command -----------------------------------------------------------------------------


def say(line: str) -> None:
    print(f"rubyctl bootstrap: {line}", flush=True)


def report(result: BootstrapResult) -> None:
    """Print what changed, the identities' public keys, and the summary."""
    for change in result.changes:
        say(change)
    for identity, key in result.public_keys.items():
        say(f"identity {identity}: nkey {key}")
    say(result.summary)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bootstrap",
        help="create or repair identities, secrets, TLS and NATS permissions (idempotent)",
        description=(
            "Make the installation's security material right: a local CA and nats-server "
            "certificate, one NKEY user per identity with its seed in Vault, one Vault policy "
            "and AppRole per identity (credentials in 0600 files under the state dir), and "
            "the nats-server authorization rendered from the permission table. What is "
            "already right is left alone; a second run reports 'nothing changed'. Uses the "
            "local OpenBao (started for the duration if it is not running), or the Vault at "
            "RUBY_VAULT_ADDR with an administrator token in RUBY_VAULT_TOKEN."
        ),
    )
    cli_args.add_state_dir(parser)
    parser.add_argument(
        "--vault-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_VAULT_PORT", 8200),
        help="port of the local OpenBao on 127.0.0.1 (env RUBY_VAULT_PORT; default 8200)",
    )
    cli_args.add_api_hostnames(parser)
    cli_args.add_prefix(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    configure_logging("rubyctl", level=os.environ.get("RUBY_LOG_LEVEL", "WARNING"))
    state = StatePaths(args.state_dir.resolve())
    try:
        with vault_admin.admin_client(state.openbao, args.vault_port or 0, say) as vault:
            result = bootstrap(vault, state, args.prefix, api_hostnames=args.api_hostnames)
    except (OpenBaoError, vault_admin.BootstrapError) as exc:
        say(f"failed: {exc}")
        return 1
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        say(f"Vault refused or failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return 1
    report(result)
    return 0
