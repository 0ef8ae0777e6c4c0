"""``rubyctl edge``: Traefik alone, for the compose files' ``edge`` container (ADR-0035).

`rubyctl up` starts and supervises Traefik itself; the compose files run it in a container of
its own instead, in the stack's network namespace, so that the one process reachable from
outside holds only its two certificates and the CA, and none of the stack's secrets (OpenBao's
unseal key, the AppRole credentials). This command renders the same configuration
(``ruby_ctl.edge``, the one place) and replaces itself with Traefik: the container's restart
policy supervises it, ``--healthcheck`` is its healthcheck.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final

from ruby_ctl import args as cli_args
from ruby_ctl.edge import API_PREFIX, Edge, EdgeError, find_traefik, pinged
from ruby_ctl.pki import EDGE, EDGE_CLIENT, PkiPaths

PORTS: Final = (  # flag, variable, default, what listens there
    *cli_args.API_PORTS,
    ("--gateway-api-port", "RUBY_GATEWAY_API_PORT", 8444, "the gateway's API on 127.0.0.1"),
    ("--ping-port", "RUBY_EDGE_PING_PORT", 8082, "Traefik's /ping on 127.0.0.1"),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "edge",
        help="run Traefik, the API's edge, alone (the compose files' edge container)",
        description=(
            "Render Traefik's configuration (the API's routes, forwardAuth, rate and body "
            "limits, security headers; the same as `rubyctl up` renders) under "
            "<state-dir>/traefik and replace this process with Traefik. It reads its HTTPS "
            "certificate (edge.pem, edge.key), its client certificate to the gateway "
            "(edge-client.pem, edge-client.key) and the CA (ca.pem) from --pki. `rubyctl up` "
            "needs none of this: it starts Traefik itself."
        ),
    )
    cli_args.add_state_dir(parser)
    parser.add_argument(
        "--pki",
        metavar="DIR",
        type=Path,
        help="where the certificates are (default <state-dir>/pki, where bootstrap writes them)",
    )
    cli_args.add_ports(parser, PORTS)
    parser.add_argument(
        "--bind",
        metavar="ADDRESS",
        default=os.environ.get("RUBY_API_BIND") or "127.0.0.1",
        help="the address Traefik's HTTPS and HTTP entry points listen on (env RUBY_API_BIND; "
        "default 127.0.0.1; the compose files say 0.0.0.0, inside the stack's network "
        "namespace, whose published port then reaches it)",
    )
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if Traefik's /ping on --ping-port answers, else 1 (the container's "
        "healthcheck)",
    )
    parser.set_defaults(handler=_handle)


def say(line: str) -> None:
    print(f"rubyctl edge: {line}", flush=True)


def _handle(args: argparse.Namespace) -> int:
    if args.ping_port is None or args.gateway_api_port is None or args.api_port is None:
        say("--api-port, --gateway-api-port and --ping-port cannot be 'off'")
        return 2
    if args.healthcheck:
        return 0 if pinged(f"http://127.0.0.1:{args.ping_port}/ping") else 1
    state_dir: Path = args.state_dir.resolve()
    pki = PkiPaths(args.pki or state_dir / "pki")
    needed = [pki.ca_cert, *(f(leaf) for leaf in (EDGE, EDGE_CLIENT) for f in (pki.cert, pki.key))]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        say(f"missing {', '.join(missing)}: `rubyctl bootstrap` (the stack) writes them")
        return 1
    try:
        traefik = find_traefik()
    except EdgeError as exc:
        say(str(exc))
        return 1
    edge = Edge(
        state_dir / "traefik",
        pki,
        args.gateway_api_port,
        https_port=args.api_port,
        http_port=args.api_http_port,
        ping_port=args.ping_port,
        bind=args.bind,
    )
    static = edge.render()
    redirect = f", http://{edge.bind}:{edge.http_port} redirects" if edge.http_port else ""
    say(
        f"Traefik on https://{edge.bind}:{edge.https_port}{API_PREFIX}{redirect}, to the "
        f"gateway's API on 127.0.0.1:{edge.gateway_api_port}; ping {edge.ping_url}"
    )
    sys.stdout.flush()
    os.execv(traefik, [str(traefik), f"--configFile={static}"])  # noqa: S606 - our binary
