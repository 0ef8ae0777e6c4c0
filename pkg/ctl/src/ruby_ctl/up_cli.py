"""The ``rubyctl up`` command line: its options, read into `ruby_ctl.up.UpOptions`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ruby_ctl import args as cli_args
from ruby_ctl import up
from ruby_runtime.logging import configure_logging

PORTS = (  # flag, variable, default, what listens there
    ("--nats-port", "RUBY_NATS_PORT", 4222, "NATS client port on 127.0.0.1, 0 for any free one"),
    ("--http-port", "RUBY_NATS_HTTP_PORT", 8222, "nats-server monitoring port, or 'off'"),
    ("--vault-port", "RUBY_VAULT_PORT", 8200, "OpenBao API port (cluster port: the next one)"),
    ("--ha-port", "RUBY_HA_PORT", 8123, "port of the demo home, 0 for any free one"),
    ("--gateway-port", "RUBY_GATEWAY_HEALTH_PORT", 8081, "the gateway's /healthz and /readyz"),
    *cli_args.API_PORTS,
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up",
        help="run the whole system on this machine until Ctrl-C",
        description=(
            "Start OpenBao (initialised on the first start, unsealed on every start), "
            "bootstrap identities and secrets, start nats-server with TLS and one NKEY user "
            "per identity (JetStream, state under --state-dir), apply every stream, consumer "
            "and KV bucket as the operator, then the audit sink (store in "
            "<state-dir>/audit/audit.db), the demo home, the gateway and the engine, each once "
            "the one before it is ready; print where everything listens and stay in the "
            "foreground, showing the services' output prefixed with their name (also in "
            "<state-dir>/logs/; PIDs in <state-dir>/run/<name>.pid). A process that dies, "
            "servers included, is restarted with backoff (from 0.1 s, doubling, at most 5 s) "
            "and the restart audited; 5 crashes of one process within 60 s stop everything "
            "(exit 1). Ctrl-C (or SIGTERM) stops everything this command started, in reverse "
            "order: the engine first, OpenBao last. Running it again, even at once, reuses "
            "the ports, the state and the identities. RUBY_LOG_LEVEL (default WARNING for "
            "rubyctl, INFO for the services) is passed on to every service."
        ),
    )
    cli_args.add_state_dir(parser)
    cli_args.add_ports(parser, PORTS)
    cli_args.add_api_hostnames(parser)
    parser.add_argument(
        "--ha-url",
        default=os.environ.get("RUBY_HA_URL") or None,
        help="a real Home Assistant's WebSocket URL (env RUBY_HA_URL); store its token "
        "first with `rubyctl secret ha-token`. Default: a simulated demo home",
    )
    parser.add_argument(
        "--rules",
        metavar="DIR",
        type=Path,
        default=Path(os.environ.get("RUBY_RULES_DIR") or "rules"),
        help="the engine's directory of *.yaml rule files (env RUBY_RULES_DIR; default rules)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart a service (never nats-server or OpenBao) when its Python source in this "
        "checkout changes: a service's own package restarts it, a shared one restarts them all",
    )
    parser.add_argument(
        "--servers-only",
        action="store_true",
        help="start OpenBao, bootstrap, nats-server with the topology and the demo home "
        "(unless --ha-url), not the audit sink, gateway and engine: the compose files run "
        "those in their own containers. <state-dir>/run/up.ready exists while all is up",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="show only rubyctl up's own lines; the services' output goes to their log files",
    )
    parser.add_argument(
        "--audit-break-glass",
        action="store_true",
        help="break the glass: render an authorization that lets the operator update AUDIT, "
        "apply AUDIT's declared configuration, render the locked authorization again and "
        "stop without starting a service; every step is audited (README, Security model)",
    )
    cli_args.add_prefix(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    configure_logging("rubyctl", level=os.environ.get("RUBY_LOG_LEVEL", "WARNING"))
    return up.run(
        up.UpOptions(
            state_dir=args.state_dir.resolve(),
            nats_port=args.nats_port if args.nats_port is not None else 4222,
            http_port=args.http_port,
            prefix=args.prefix,
            vault_port=args.vault_port if args.vault_port is not None else 8200,
            ha_url=args.ha_url,
            ha_port=args.ha_port if args.ha_port is not None else 8123,
            gateway_port=args.gateway_port if args.gateway_port is not None else 8081,
            api_port=args.api_port if args.api_port is not None else 8443,
            api_http_port=args.api_http_port,
            api_hostnames=args.api_hostnames,
            rules_dir=args.rules.resolve(),
            quiet=args.quiet,
            reload=args.reload,
            servers_only=args.servers_only,
            audit_break_glass=args.audit_break_glass,
        )
    )
