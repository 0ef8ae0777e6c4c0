"""The compose files are valid Compose and agree with the code (issues 15 and 16, ADR-0035).

Valid: both pass the Compose specification's JSON Schema. Agree: every ``RUBY_*`` variable a
service sets is one its program reads (its ``--help`` lists it); every named volume is mounted
where the code keeps that state and is made, owned by the images' user, in the Dockerfile; each
service's AppRole files are the secrets bootstrap writes for its identity; the CA is the one
bootstrap writes; the ports the services are pointed at are the ones the stack listens on; the
production images are this version's. The API: the gateway serves it with the certificate and
key bootstrap issued for it, given as secrets; the edge service runs `rubyctl edge` in the
stack's namespace with its two certificates and the CA, sends to the gateway's API port, and
listens on every address there; the stack publishes that HTTPS port and nothing else.
`problems` is the check; the tests below also show it failing on a broken file.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest

from ruby_audit_sink.service import SETTINGS as AUDIT_SINK_SETTINGS
from ruby_ctl import edge_cli, live, up_cli
from ruby_ctl.bootstrap import StatePaths
from ruby_ctl.cli import build_parser
from ruby_ctl.pki import EDGE, EDGE_CLIENT, GATEWAY_API, PkiPaths
from ruby_ctl.testing import load_compose
from ruby_engine.service import SETTINGS as ENGINE_SETTINGS
from ruby_gateway.service import DEFAULT_HA_URL
from ruby_gateway.service import SETTINGS as GATEWAY_SETTINGS
from ruby_runtime.settings import DEFAULT_NATS_URL, DEFAULT_VAULT_ADDR, ENVIRONMENT
from ruby_runtime.version import VERSION

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
FILES: Final = ("docker-compose.yml", "docker-compose.prod.yml")
STATE: Final = "/var/lib/ruby"
"""The images' ``RUBY_STATE_DIR`` (Dockerfile)."""
INTERPOLATED: Final = {  # what a user sets for the production file
    "GHCR_OWNER": "someone",
    "RUBY_HA_URL": "ws://homeassistant.local:8123/api/websocket",
    "RUBY_TIMEZONE": "Europe/Paris",
}
SERVICES: Final = {  # compose service -> (identity, its program's own settings)
    "audit-sink": ("audit_sink", AUDIT_SINK_SETTINGS),
    "gateway": ("gateway", GATEWAY_SETTINGS),
    "engine": ("engine", ENGINE_SETTINGS),
}


def load(name: str, env: Mapping[str, str] = INTERPOLATED) -> dict[str, Any]:
    return load_compose(HERE / name, env)


def rubyctl_reads(command: str = "up") -> set[str]:
    """The variables a rubyctl command reads: its ``--help`` names them, and it reads the
    runtime's (`rubyctl up` as the operator)."""
    commands = next(
        a for a in build_parser()._actions if a.dest == "command" and a.choices is not None
    )
    assert isinstance(commands.choices, dict)
    text = commands.choices[command].format_help()
    return set(re.findall(r"RUBY_[A-Z_]+", text)) | set(ENVIRONMENT)


def secret_targets(service: Mapping[str, Any]) -> dict[str, str]:
    """Where each of a service's secrets is, inside it: target path -> secret name (a bare
    name or a relative target is under /run/secrets, as Compose puts it)."""
    found = {}
    for entry in service.get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        found[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return found


def option(command: list[str], flag: str) -> str | None:
    """The value after ``flag`` in a command line, or None."""
    return command[command.index(flag) + 1] if flag in command[:-1] else None


def mounts(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each volume of a service, in the short syntax."""
    for entry in service.get("volumes", []):
        source, target, *_ = entry.split(":")
        yield source, target


def dockerfile_volume_dirs() -> set[str]:
    """The folders the Dockerfile makes for named volumes, owned by the images' user."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    made = re.search(r"install -d -o ruby -g ruby -m 0700 ([^&\n]+)", text)
    assert made is not None, "the Dockerfile no longer makes the volumes' folders"
    return set(made.group(1).split())


def problems(doc: Mapping[str, Any], *, prod: bool) -> list[str]:
    """Where a compose file disagrees with the code; empty when it agrees."""
    found: list[str] = []
    services = doc["services"]
    stack = services["stack"]
    state = StatePaths(Path(STATE))
    stack_env = stack.get("environment", {})

    for name in stack_env:
        if name.startswith("RUBY_") and name not in rubyctl_reads("up"):
            found.append(f"stack: {name} is not a setting of rubyctl up")
    if stack.get("command", [])[:2] != ["up", "--servers-only"]:
        found.append("stack: does not run `rubyctl up --servers-only`")
    wanted = {
        str(state.nats): "JetStream",
        str(state.openbao): "OpenBao",
        str(state.root / "approle"): "the AppRole credentials",
        str(state.pki.directory): "the CA",
    }
    stack_mounts = dict((t, s) for s, t in mounts(stack))
    for target, what in wanted.items():
        if target not in stack_mounts:
            found.append(f"stack: nothing mounted at {target} ({what})")
    approle_source = stack_mounts.get(str(state.root / "approle"), "?")
    pki_source = stack_mounts.get(str(state.pki.directory), "?")
    ca_file = doc.get("configs", {}).get("ruby_ca", {}).get("file")
    if ca_file != f"{pki_source}/{state.pki.ca_cert.name}":
        found.append(f"configs.ruby_ca: {ca_file} is not the CA bootstrap writes")
    nats_port = int(stack_env.get("RUBY_NATS_PORT", _default("--nats-port")))
    vault_port = int(stack_env.get("RUBY_VAULT_PORT", _default("--vault-port")))
    ha_port = int(stack_env.get("RUBY_HA_PORT", _default("--ha-port")))
    found += edge_problems(doc, pki_source, prod=prod)

    for name, (identity, own) in SERVICES.items():
        service = services.get(name)
        if service is None:
            found.append(f"{name}: missing")
            continue
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        for variable in env:
            if variable.startswith("RUBY_") and variable not in {*ENVIRONMENT, *own}:
                found.append(f"{name}: {variable} is not a setting of the {name}")
        if service.get("network_mode") != "service:stack":
            found.append(f"{name}: not in the stack's network namespace")
        if service.get("depends_on", {}).get("stack", {}).get("condition") != "service_healthy":
            found.append(f"{name}: starts before the stack is healthy")
        for kind in ("role_id", "secret_id"):
            secret = f"{identity}_{kind}"
            variable = f"RUBY_VAULT_{kind.upper()}_FILE"
            if env.get(variable) != f"/run/secrets/{secret}":
                found.append(f"{name}: {variable} is not /run/secrets/{secret}")
            if secret not in service.get("secrets", []):
                found.append(f"{name}: secret {secret} not given to it")
            source = doc.get("secrets", {}).get(secret, {}).get("file")
            if source != f"{approle_source}/{identity}/{kind}":
                found.append(f"secrets.{secret}: {source} is not what bootstrap writes")
        ca_target = {c.get("source"): c.get("target") for c in service.get("configs", [])}
        if env.get("RUBY_NATS_CA_FILE") != ca_target.get("ruby_ca"):
            found.append(f"{name}: RUBY_NATS_CA_FILE is not where the CA is mounted")
        nats = urlsplit(env.get("RUBY_NATS_URL", DEFAULT_NATS_URL))
        if (nats.hostname, nats.port) != ("127.0.0.1", nats_port):
            found.append(f"{name}: NATS at {nats.netloc}, the stack's is 127.0.0.1:{nats_port}")
        vault = urlsplit(env.get("RUBY_VAULT_ADDR", DEFAULT_VAULT_ADDR))
        if (vault.hostname, vault.port) != ("127.0.0.1", vault_port):
            found.append(f"{name}: Vault at {vault.netloc}, the stack's is 127.0.0.1:{vault_port}")
        if "restart" not in service or "healthcheck" not in service:
            found.append(f"{name}: no restart policy or no healthcheck")
        if name == "audit-sink":
            audit_dir = str(Path(env.get("RUBY_AUDIT_DB", f"{STATE}/audit/audit.db")).parent)
            if ("audit", audit_dir) not in set(mounts(service)):
                found.append(f"audit-sink: the audit volume is not mounted at {audit_dir}")
        if name == "engine":
            rules = env.get("RUBY_RULES_DIR", "rules")
            if rules not in {t for _, t in mounts(service)}:
                found.append(f"engine: RUBY_RULES_DIR {rules} is not a mounted folder")
        if name == "gateway":
            found += gateway_api_problems(doc, env, pki_source)
        if name == "gateway" and not stack_env.get("RUBY_HA_URL"):
            ha = urlsplit(env.get("RUBY_HA_URL", DEFAULT_HA_URL))
            if (ha.hostname, ha.port) != ("127.0.0.1", ha_port):
                found.append(f"gateway: the demo home is on 127.0.0.1:{ha_port}, not {ha.netloc}")
        if prod:
            image = f"/ruby-core-{name}:{VERSION}"
            if not str(service.get("image", "")).endswith(image):
                found.append(f"{name}: image {service.get('image')} is not ...{image}")
        else:
            if service.get("command") != ["live", name] or name not in live.PROGRAMS:
                found.append(f"{name}: does not run `rubyctl live {name}`")
            sources = {t: s for s, t in mounts(service)}
            if sources.get("/src/pkg") != "../pkg" or sources.get("/src/services") != "../services":
                found.append(f"{name}: the source tree is not mounted over /src")

    named = {s for svc in services.values() for s, _ in mounts(svc) if not s.startswith(".")}
    if named != set(doc.get("volumes", {})):
        found.append(f"volumes: declared {sorted(doc.get('volumes', {}))}, used {sorted(named)}")
    made = dockerfile_volume_dirs()
    for svc in services.values():
        for source, target in mounts(svc):
            if source in named and target not in made:
                found.append(f"volume {source} at {target}: the Dockerfile does not make it")
    if prod and not str(stack.get("image", "")).endswith(f"/ruby-core-rubyctl:{VERSION}"):
        found.append(f"stack: image {stack.get('image')} is not this version's rubyctl")
    return found


def gateway_api_problems(
    doc: Mapping[str, Any], env: Mapping[str, str], pki_source: str
) -> list[str]:
    """The gateway serves its API with the certificate and key bootstrap issued for it, given
    to it alone as secrets (so the key keeps its 0600 and its owner)."""
    found = []
    pki = PkiPaths(Path(STATE) / "pki")  # the names bootstrap gives the files
    if env.get("RUBY_GATEWAY_API_PORT", "off").lower() == "off":
        found.append("gateway: RUBY_GATEWAY_API_PORT is off: no API for the edge")
    given = secret_targets(doc["services"]["gateway"])
    for kind, variable, path in (
        ("cert", "RUBY_GATEWAY_API_CERT", pki.cert(GATEWAY_API)),
        ("key", "RUBY_GATEWAY_API_KEY", pki.key(GATEWAY_API)),
    ):
        secret = f"gateway_api_{kind}"
        if secret not in given.values():
            found.append(f"gateway: secret {secret} not given to it")
        elif given.get(env.get(variable, "")) != secret:
            found.append(f"gateway: {variable} is not where secret {secret} is")
        source = doc.get("secrets", {}).get(secret, {}).get("file")
        if source != f"{pki_source}/{path.name}":
            found.append(f"secrets.{secret}: {source} is not what bootstrap writes ({path.name})")
    return found


def edge_problems(doc: Mapping[str, Any], pki_source: str, *, prod: bool) -> list[str]:
    """Traefik: `rubyctl edge` in the stack's namespace with its own two certificates and the
    CA from bootstrap, sending to the gateway's API port, on every address of the namespace;
    the stack publishes its HTTPS port and only that."""
    services = doc["services"]
    edge = services.get("edge")
    if edge is None:
        return ["edge: missing (Traefik, the API's edge)"]
    found = []
    env = {k: str(v) for k, v in edge.get("environment", {}).items()}
    for variable in env:
        if variable.startswith("RUBY_") and variable not in rubyctl_reads("edge"):
            found.append(f"edge: {variable} is not a setting of rubyctl edge")
    command = list(edge.get("command", []))
    if command[:1] != ["edge"]:
        found.append("edge: does not run `rubyctl edge`")
    if option(command, "--bind") != "0.0.0.0":  # noqa: S104 - inside the stack's namespace
        found.append("edge: --bind is not 0.0.0.0: the published port would not reach Traefik")
    if edge.get("network_mode") != "service:stack":
        found.append("edge: not in the stack's network namespace")
    if edge.get("depends_on", {}).get("stack", {}).get("condition") != "service_healthy":
        found.append("edge: starts before the stack (bootstrap) is healthy")
    if "restart" not in edge or "healthcheck" not in edge:
        found.append("edge: no restart policy or no healthcheck")
    elif edge["healthcheck"]["test"][1:] != ["/app/entrypoint", "edge", "--healthcheck"]:
        found.append("edge: the healthcheck is not `rubyctl edge --healthcheck`")
    inside = PkiPaths(Path(option(command, "--pki") or f"{STATE}/pki"))
    pki = PkiPaths(Path(STATE) / "pki")  # the names bootstrap gives the files
    given = secret_targets(edge)
    secrets = doc.get("secrets", {})
    for leaf in (EDGE, EDGE_CLIENT):
        for there, here in ((inside.cert(leaf), pki.cert(leaf)), (inside.key(leaf), pki.key(leaf))):
            secret = given.get(str(there))
            if secret is None:
                found.append(f"edge: no secret at {there} ({leaf.what})")
            elif (source := secrets.get(secret, {}).get("file")) != f"{pki_source}/{here.name}":
                found.append(f"secrets.{secret}: {source} is not {pki_source}/{here.name}")
    ca = {c.get("target"): c.get("source") for c in edge.get("configs", [])}
    if ca.get(str(inside.ca_cert)) != "ruby_ca":
        found.append(f"edge: the CA is not at {inside.ca_cert}")
    to_gateway = env.get("RUBY_GATEWAY_API_PORT", str(_edge_default("--gateway-api-port")))
    gateway = services.get("gateway", {}).get("environment", {})
    if str(gateway.get("RUBY_GATEWAY_API_PORT")) != to_gateway:
        found.append(f"edge: sends to the gateway's API on {to_gateway}, the gateway's is "
                     f"{gateway.get('RUBY_GATEWAY_API_PORT')}")  # fmt: skip
    https = env.get("RUBY_API_PORT", str(_edge_default("--api-port")))
    published = [str(p) for p in services["stack"].get("ports", [])]
    if not any(p.split(":")[-1] == https for p in published):
        found.append(f"stack: does not publish the API (the edge's HTTPS port {https})")
    for entry in published:
        if entry.split(":")[-1] != https:
            found.append(f"stack: publishes {entry}: only the API's port {https} is meant to be")
        elif len(entry.split(":")) != 3:
            found.append(f"stack: publishes {entry} on every address; name one (127.0.0.1)")
    if prod and not str(edge.get("image", "")).endswith(f"/ruby-core-rubyctl:{VERSION}"):
        found.append(f"edge: image {edge.get('image')} is not this version's rubyctl")
    return found


def _default(flag: str) -> int:
    return next(default for f, _, default, _ in up_cli.PORTS if f == flag)


def _edge_default(flag: str) -> int:
    return next(default for f, _, default, _ in edge_cli.PORTS if f == flag)


@pytest.mark.parametrize("name", FILES)
def test_the_compose_files_follow_the_compose_specification(name: str) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(HERE / name)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", FILES)
def test_the_compose_files_agree_with_the_code(name: str) -> None:
    assert problems(load(name), prod=name.endswith("prod.yml")) == []


def test_the_api_is_published_where_the_user_says() -> None:
    """Dev: this host only. Prod: RUBY_API_ADDRESS, else this host only."""
    dev = load("docker-compose.yml", {})
    assert dev["services"]["stack"]["ports"] == ["127.0.0.1:8443:8443"]
    prod = load("docker-compose.prod.yml")
    assert prod["services"]["stack"]["ports"] == ["127.0.0.1:8443:8443"]
    lan = load("docker-compose.prod.yml", {**INTERPOLATED, "RUBY_API_ADDRESS": "192.168.1.20",
                                           "RUBY_API_HOSTNAMES": "ruby.lan"})  # fmt: skip
    assert lan["services"]["stack"]["ports"] == ["192.168.1.20:8443:8443"]
    assert lan["services"]["stack"]["environment"]["RUBY_API_HOSTNAMES"] == "ruby.lan"
    assert problems(lan, prod=True) == []


def test_the_production_file_insists_on_what_it_cannot_guess() -> None:
    for missing in INTERPOLATED:
        env = {k: v for k, v in INTERPOLATED.items() if k != missing}
        with pytest.raises(ValueError, match=f"{missing} is required"):
            load("docker-compose.prod.yml", env)
    dev = load("docker-compose.yml", {})  # the dev file needs nothing: the demo home
    assert dev["services"]["gateway"]["environment"]["RUBY_HA_URL"] == DEFAULT_HA_URL


REMOVED: Final = "<removed>"
"""`break_it`'s value that deletes the key."""


def break_it(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = broken
    for key in parents:
        node = node[key]
    if value == REMOVED:
        del node[last]
    else:
        node[last] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "said"),
    [
        ("services.gateway.environment.RUBY_HA_TOKEN", "x", "RUBY_HA_TOKEN is not a setting"),
        ("services.engine.environment.RUBY_AUDIT_DB", "/x", "RUBY_AUDIT_DB is not a setting"),
        ("services.stack.environment.RUBY_RULE_DIR", "/x", "RUBY_RULE_DIR is not a setting"),
        ("services.audit-sink.volumes", ["audit:/var/lib/ruby/db"], "audit volume is not"),
        ("services.stack.volumes", ["jetstream:/var/lib/ruby/jetstream"], "nothing mounted"),
        ("services.engine.environment.RUBY_NATS_URL", "tls://127.0.0.1:4223", "NATS at"),
        ("services.stack.environment.RUBY_VAULT_PORT", "8300", "the stack's is 127.0.0.1:8300"),
        ("secrets.gateway_secret_id.file", "./secrets/gateway", "is not what bootstrap"),
        ("services.engine.secrets", ["engine_role_id"], "engine_secret_id not given"),
        ("services.gateway.network_mode", "bridge", "not in the stack's network namespace"),
        ("services.engine.image", "ghcr.io/someone/ruby-core-engine:0.0.9", "is not ..."),
        ("volumes.spare", None, "volumes: declared"),
        ("services.edge", REMOVED, "edge: missing"),
        ("services.stack.ports", [], "does not publish the API"),
        ("services.stack.ports", ["8443:8443"], "on every address"),
        ("services.stack.ports", ["127.0.0.1:8443:8443", "127.0.0.1:8200:8200"], "publishes 127"),
        (
            "services.gateway.secrets",
            ["gateway_role_id", "gateway_secret_id", "gateway_api_cert"],
            "gateway_api_key not given",
        ),
        ("services.gateway.environment.RUBY_GATEWAY_API_KEY", "/run/secrets/x", "API_KEY is not"),
        ("services.gateway.environment.RUBY_GATEWAY_API_PORT", "off", "no API for the edge"),
        ("services.gateway.environment.RUBY_GATEWAY_API_PORT", "9444", "the gateway's is 9444"),
        ("secrets.gateway_api_key.file", "./secrets/pki/edge.key", "is not what bootstrap"),
        ("secrets.edge_client_key.file", "./secrets/pki/edge.key", "is not ./secrets/pki/edge-c"),
        ("services.edge.secrets", [], "no secret at /etc/ruby/pki/edge.key"),
        ("services.edge.configs", [], "the CA is not at /etc/ruby/pki/ca.pem"),
        ("services.edge.command", ["edge", "--pki", "/etc/ruby/pki"], "--bind is not 0.0.0.0"),
        ("services.edge.environment.RUBY_API_PORT", "9443", "the edge's HTTPS port 9443"),
        ("services.edge.environment.RUBY_EDGE_PKI", "/x", "not a setting of rubyctl edge"),
        ("services.edge.network_mode", "host", "edge: not in the stack's network namespace"),
        ("services.edge.image", "ghcr.io/someone/ruby-core-gateway:0.1.0", "edge: image"),
    ],
)
def test_the_check_fails_on_a_file_that_disagrees(path: str, value: Any, said: str) -> None:
    doc = load("docker-compose.prod.yml")
    assert problems(doc, prod=True) == []
    found = problems(break_it(doc, path, value), prod=True)
    assert any(said in line for line in found), found
