"""The Vault side of ``rubyctl bootstrap``: mounts, secrets, policies and AppRoles, idempotently.

Each ``ensure_*`` makes one thing right and returns a description of what it changed, or
``None`` when it was right already. They run with an administrator's token (locally the
OpenBao root token). The layout they create is the one ``ruby_runtime.vault`` reads: a KV v2
mount, ``<prefix>/<identity>/...`` per identity, a policy ``<prefix>-<identity>`` that reads
only that folder, and an AppRole of the same name bound to that policy alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final

import hvac
import hvac.exceptions

from ruby_ctl.openbao import OpenBao
from ruby_runtime.secret import Secret
from ruby_runtime.settings import DEFAULT_VAULT_ADDR
from ruby_runtime.vault import identity_path

APPROLE_MOUNT: Final = "approle"
TOKEN_TTL: Final = 20 * 60
"""A service's token lives 20 minutes: it reads its secrets at start and revokes the token."""
TOKEN_MAX_TTL: Final = 60 * 60


class BootstrapError(RuntimeError):
    """Vault holds something bootstrap must not overwrite (a mount of another type, ...)."""


def role_name(prefix: str, identity: str) -> str:
    """The AppRole and the policy of one identity of an installation."""
    return f"{prefix}-{identity}"


def ensure_kv_mount(vault: hvac.Client, mount: str) -> str | None:
    """A KV version 2 secrets engine at ``mount``."""
    mounts = vault.sys.list_mounted_secrets_engines()["data"]
    current = mounts.get(f"{mount}/")
    if current is None:
        vault.sys.enable_secrets_engine(
            "kv", path=mount, options={"version": "2"}, description="Ruby Core secrets"
        )
        _wait_until_versioned(vault, mount)
        return f"Vault KV v2 secrets engine at {mount}/: enabled"
    if current["type"] != "kv" or (current.get("options") or {}).get("version") != "2":
        raise BootstrapError(f"Vault already has a {current['type']} engine at {mount}/")
    return None


KV_UPGRADE_WAIT = 15.0
"""Seconds a freshly enabled KV v2 mount may take to finish its upgrade to versioned data."""


def _wait_until_versioned(vault: hvac.Client, mount: str) -> None:
    # A new KV v2 mount answers "Upgrading from non-versioned to versioned data" for a moment;
    # reading an absent path until it says "not found" waits exactly for the end of that.
    deadline = time.monotonic() + KV_UPGRADE_WAIT
    while True:
        try:
            vault.secrets.kv.v2.read_secret_version(
                path="_ruby_probe", mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return  # "not found": the mount is versioned and ready
        except hvac.exceptions.InvalidRequest as exc:
            if "upgrading" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return


def ensure_approle_auth(vault: hvac.Client) -> str | None:
    """The AppRole auth method at ``approle/``."""
    methods = vault.sys.list_auth_methods()["data"]
    current = methods.get(f"{APPROLE_MOUNT}/")
    if current is None:
        vault.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
        return f"Vault auth method {APPROLE_MOUNT}/: enabled"
    if current["type"] != "approle":
        raise BootstrapError(f"Vault already has a {current['type']} auth method at approle/")
    return None


def read_field(vault: hvac.Client, mount: str, path: str, field: str) -> Secret | None:
    """The string ``field`` of the KV v2 secret at ``path``, or None when absent."""
    try:
        response = vault.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return None
    value = response["data"]["data"].get(field)
    return Secret(value, f"{field} of {mount}/{path}") if isinstance(value, str) else None


def write_fields(vault: hvac.Client, mount: str, path: str, fields: Mapping[str, Secret]) -> None:
    """Write a new version of the KV v2 secret at ``path``."""
    vault.secrets.kv.v2.create_or_update_secret(
        path=path,
        mount_point=mount,
        secret={name: value.reveal() for name, value in fields.items()},
    )


def policy_text(mount: str, prefix: str, identity: str) -> str:
    """The HCL policy of one identity: read its own folder of the KV mount, nothing else."""
    return (
        f"# Rendered by rubyctl bootstrap: {identity} of installation {prefix!r} reads its own\n"
        "# secrets and nothing else.\n"
        f'path "{mount}/data/{identity_path(prefix, identity)}/*" {{\n'
        '  capabilities = ["read"]\n'
        "}\n"
    )


def ensure_policy(vault: hvac.Client, name: str, text: str) -> str | None:
    """The ACL policy ``name`` with exactly ``text``."""
    try:
        current = vault.sys.read_policy(name)["data"]["rules"]
    except hvac.exceptions.InvalidPath:
        current = None
    if current == text:
        return None
    vault.sys.create_or_update_policy(name, text, pretty_print=False)
    return f"Vault policy {name}: {'created' if current is None else 'updated'}"


def _role_settings(policy: str) -> dict[str, object]:
    return {
        "bind_secret_id": True,
        "token_policies": [policy],
        "token_ttl": TOKEN_TTL,
        "token_max_ttl": TOKEN_MAX_TTL,
        "secret_id_ttl": 0,  # production injects fresh ones; locally they live in .ruby/
        "secret_id_num_uses": 0,  # a local service logs in at every start
        "token_no_default_policy": False,  # `default` lets a token revoke itself
    }


def ensure_approle(vault: hvac.Client, name: str, policy: str) -> str | None:
    """The AppRole ``name``, bound to ``policy`` alone, with the declared token lifetimes."""
    wanted = _role_settings(policy)
    try:
        current = vault.auth.approle.read_role(name, mount_point=APPROLE_MOUNT)["data"]
    except hvac.exceptions.InvalidPath:
        current = None
    if current is not None and all(_same(current.get(key), value) for key, value in wanted.items()):
        return None
    vault.auth.approle.create_or_update_approle(name, mount_point=APPROLE_MOUNT, **wanted)
    return f"Vault AppRole {name}: {'created' if current is None else 'updated'}"


def role_id(vault: hvac.Client, name: str) -> Secret:
    """The role id of the AppRole ``name``."""
    value = vault.auth.approle.read_role_id(name, mount_point=APPROLE_MOUNT)["data"]["role_id"]
    return Secret(str(value), f"role id of {name}")


def secret_id_valid(vault: hvac.Client, name: str, secret_id: Secret) -> bool:
    """Whether ``secret_id`` is a live secret id of the AppRole ``name``."""
    try:
        found = vault.auth.approle.read_secret_id(
            name, secret_id.reveal(), mount_point=APPROLE_MOUNT
        )
    except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
        return False
    return isinstance(found, dict) and bool(found.get("data"))


def reissue_secret_id(vault: hvac.Client, name: str) -> Secret:
    """Destroy every secret id of the AppRole ``name`` and issue one new one."""
    try:
        listed = vault.auth.approle.list_secret_id_accessors(name, mount_point=APPROLE_MOUNT)
        accessors = listed["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        accessors = []
    for accessor in accessors:
        vault.auth.approle.destroy_secret_id_accessor(name, accessor, mount_point=APPROLE_MOUNT)
    issued = vault.auth.approle.generate_secret_id(name, mount_point=APPROLE_MOUNT)
    return Secret(issued["data"]["secret_id"], f"secret id of {name}")


def _same(current: object, wanted: object) -> bool:
    if isinstance(wanted, list):
        have = current if isinstance(current, list) else []
        return sorted(map(str, have)) == sorted(map(str, wanted))
    return current == wanted


@contextlib.contextmanager
def admin_client(openbao_dir: Path, port: int, say: Callable[[str], None]) -> Iterator[hvac.Client]:
    """An administrator's Vault client: the Vault at ``RUBY_VAULT_ADDR`` with the token in
    ``RUBY_VAULT_TOKEN``, else the local OpenBao (the running one on ``port``, or one started
    from ``openbao_dir`` for the duration and stopped again)."""
    token = os.environ.get("RUBY_VAULT_TOKEN")
    if token:
        yield hvac.Client(url=os.environ.get("RUBY_VAULT_ADDR", DEFAULT_VAULT_ADDR), token=token)
        return
    bao = OpenBao(openbao_dir, port=port)
    if bao.attach():
        bao.unseal()
        yield bao.root_client()
        return
    bao.start_unsealed()
    say(f"started the local OpenBao from {openbao_dir} (pid {bao.pid}, {bao.addr})")
    try:
        yield bao.root_client()
    finally:
        say(f"OpenBao stopped (exit code {bao.stop()})")
