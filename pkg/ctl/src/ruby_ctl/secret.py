"""``rubyctl secret ha-token``: store a real Home Assistant's access token in Vault.

The gateway reads it at start (field ``token`` of ``<prefix>/gateway/ha``). The token is read
from standard input (without echo on a terminal), never from the command line, and never
printed. Its writing is audited (``secret.written``, spooled until NATS runs). On a fresh state
directory it bootstraps the installation first (the KV mount, the identities and their
policies: ``rubyctl bootstrap``, idempotent), so it may come before the first ``rubyctl up``.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys

import hvac.exceptions
import requests

from ruby_ctl import args as cli_args
from ruby_ctl import vault_admin
from ruby_ctl.audit_spool import spool
from ruby_ctl.bootstrap import StatePaths, bootstrap
from ruby_ctl.openbao import OpenBaoError
from ruby_natsx.audit import audit_record
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.subjects import Subjects
from ruby_runtime.secret import Secret
from ruby_runtime.settings import DEFAULT_VAULT_MOUNT
from ruby_runtime.vault import HA_TOKEN_FIELD, ha_token_path

SOURCE_FIELD = "source"
"""Who wrote the token: ``rubyctl secret ha-token`` or ``demo`` (`rubyctl up`'s demo home)."""
OPERATOR_SOURCE = "rubyctl secret ha-token"
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{20,4096}")


def say(line: str) -> None:
    print(f"rubyctl secret: {line}", flush=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "secret",
        help="store a secret the services need (the Home Assistant token)",
        description="Store secrets in Vault where the services read them.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    ha = verbs.add_parser(
        "ha-token",
        help="store a real Home Assistant's long-lived access token for the gateway",
        description=(
            "Read a Home Assistant long-lived access token from standard input (typed without "
            "echo on a terminal) and store it in Vault, field 'token' of "
            "<prefix>/gateway/ha, where the gateway reads it at its next start. Create the "
            "token in Home Assistant under your profile, Security, Long-lived access tokens. "
            "Uses the local OpenBao (started for the duration if it is not running), or the "
            "Vault at RUBY_VAULT_ADDR with an administrator token in RUBY_VAULT_TOKEN; what "
            "`rubyctl bootstrap` would create is created first, so it works on a fresh state "
            "directory, before the first `rubyctl up`. The "
            "demo home (rubyctl up without --ha-url) stores its own token in the same place: "
            "run this again before pointing rubyctl up at a real Home Assistant. Example: "
            "rubyctl secret ha-token < ha-token.txt"
        ),
    )
    cli_args.add_state_dir(ha)
    ha.add_argument(
        "--vault-port",
        type=cli_args.port,
        default=cli_args.env_port("RUBY_VAULT_PORT", 8200),
        help="port of the local OpenBao on 127.0.0.1 (env RUBY_VAULT_PORT; default 8200)",
    )
    cli_args.add_prefix(ha)
    ha.set_defaults(handler=_ha_token)


def _read_token() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Home Assistant long-lived access token: ").strip()
    return sys.stdin.read().strip()


def _ha_token(args: argparse.Namespace) -> int:
    raw = _read_token()
    if _TOKEN.fullmatch(raw) is None:
        say(
            "refused: expected one long-lived access token (20 or more characters, no spaces) "
            "on standard input"
        )
        return 2
    token = Secret(raw, "home assistant token")
    state = StatePaths(args.state_dir.resolve())
    path = ha_token_path(args.prefix)
    try:
        with vault_admin.admin_client(state.openbao, args.vault_port or 0, say) as vault:
            # The mount, the gateway's identity and policy may not exist yet (a fresh state
            # directory, before any `rubyctl up`): make them right first, as bootstrap does.
            prepared = bootstrap(vault, state, args.prefix)
            if prepared.changes:
                say(f"bootstrapped the installation first ({prepared.summary}):")
                for change in prepared.changes:
                    say(f"  {change}")
            vault_admin.write_fields(
                vault,
                DEFAULT_VAULT_MOUNT,
                path,
                {HA_TOKEN_FIELD: token, SOURCE_FIELD: Secret(OPERATOR_SOURCE, "source")},
            )
    except (OpenBaoError, vault_admin.BootstrapError) as exc:
        say(f"failed: {exc}")
        return 1
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        say(f"Vault refused or failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return 1
    where = f"{DEFAULT_VAULT_MOUNT}/{path}"
    record = audit_record(
        Subjects(args.prefix),
        service=OPERATOR,
        action="secret.written",
        target=f"vault:{where}#{HA_TOKEN_FIELD}",
        reason="the Home Assistant token, stored with rubyctl secret ha-token",
        details={"path": where, "field": HA_TOKEN_FIELD},
    )
    spool(state.root, [record])
    say(f"stored the Home Assistant token in Vault at {where} (field {HA_TOKEN_FIELD})")
    say(
        "the gateway reads it at its next start: rubyctl up --ha-url ws://<host>:8123/api/websocket"
    )
    return 0
