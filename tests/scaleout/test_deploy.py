"""``deploy/``: the compose file and the Kubernetes manifests match the CLI.

Each container's command must be an ``om`` command that exists, with options
that exist; each OMOPS_* variable it is given must be a setting or the
variable of one of its command's options; ports and health probes must agree
with the server's variables and routes. Renaming an option (or its variable)
in the CLI without changing deploy/ fails here. Docker cannot run in the test
environment: the files are checked, not started.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from omops.cli._runtime import LIST_VARIABLES
from omops.cli.app import app
from omops.server import create_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Variables read by omops.config (every process), and those of the S3 client.
SETTINGS = {
    "OMOPS_HOME",
    "OMOPS_CATALOG",
    "OMOPS_BLOBS",
    "OMOPS_BLOBS_OPTIONS",
    "OMOPS_BROKER",
    "OMOPS_BUCKET",
    "OMOPS_LABEL",
}
AWS = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
#: Commands the deploy files start that another branch adds (issue: jobs). Once
#: `om runtime scheduler` exists it is checked like the others (see _command).
PENDING = {("runtime", "scheduler")}


@dataclass
class Container:
    where: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    probes: dict[str, tuple[str, int]] = field(default_factory=dict)


def _cli() -> Any:
    return typer.main.get_command(app)  # a click group (typer's own copy of click)


def _command(words: list[str]) -> Any:
    """The click command ``om WORDS...`` names (None: a pending one), and fail if none."""
    assert words[0] == "om", f"{words}: every omops container runs `om ...`"
    group = _cli()
    path = []
    for word in words[1:]:
        if word.startswith("-") or not hasattr(group, "commands"):
            break
        path.append(word)
        found = group.commands.get(word)
        if found is None:
            assert tuple(path) in PENDING, f"`om {' '.join(path)}` is not an om command"
            return None
        group = found
    return group


def _envvars(command: Any) -> dict[str, str]:
    """Variable -> option name, for every option of ``command``."""
    found = {}
    for param in command.params:
        names = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
        for name in names:
            if name:
                found[name] = param.name
    for (cmd, option), name in LIST_VARIABLES.items():
        if cmd == command.name:
            found[name] = option
    return found


def _compose() -> Iterator[Container]:
    document = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in document["services"].items():
        if service.get("image", "").startswith("omops"):
            env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
            ports = [int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])]
            probes = {}
            test = " ".join(service.get("healthcheck", {}).get("test", []))
            if "http://" in test:
                url = test.split("http://", 1)[1].split("'", 1)[0]
                hostport, _, path = url.partition("/")
                probes["health"] = (f"/{path}", int(hostport.rsplit(":", 1)[1]))
            yield Container(f"compose {name}", service["command"], env, ports, probes)


def _manifests() -> list[dict]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def _kubernetes() -> Iterator[Container]:
    documents = _manifests()
    shared: dict[str, dict[str, str]] = {}
    for doc in documents:
        if doc["kind"] in ("ConfigMap", "Secret"):
            shared[doc["metadata"]["name"]] = {
                k: str(v) for k, v in (doc.get("data") or doc.get("stringData") or {}).items()
            }
    for doc in documents:
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in shared, f"{ref['name']} is not defined in deploy/kubernetes"
                env.update(shared[ref["name"]])
            env.update({e["name"]: str(e["value"]) for e in container.get("env", [])})
            ports = [p["containerPort"] for p in container.get("ports", [])]
            probes = {
                kind: (probe["httpGet"]["path"], int(probe["httpGet"]["port"]))
                for kind in ("livenessProbe", "readinessProbe")
                if (probe := container.get(kind))
            }
            where = f"kubernetes {doc['metadata']['name']}/{container['name']}"
            yield Container(where, container["command"], env, ports, probes)


CONTAINERS = [*_compose(), *_kubernetes()]


@pytest.mark.parametrize("container", CONTAINERS, ids=[c.where for c in CONTAINERS])
def test_commands_options_and_variables_exist(container: Container) -> None:
    command = _command(container.command)
    if command is None:  # pending: only the settings every process reads
        assert set(container.env) <= SETTINGS | AWS, container.where
        return
    known = {p.opts[0] if p.opts else p.name for p in command.params}
    flags = [w.split("=", 1)[0] for w in container.command if w.startswith("--")]
    for flag in flags:
        assert any(flag in p.opts or flag in p.secondary_opts for p in command.params), (
            f"{container.where}: `{' '.join(container.command)}` has no option {flag} "
            f"(it has {sorted(known)})"
        )
    variables = _envvars(command)
    for name in container.env:
        assert name in SETTINGS | AWS or name in variables, (
            f"{container.where}: {name} is neither a setting nor the variable of an option of "
            f"`{' '.join(container.command)}` (those are {sorted(variables)})"
        )


@pytest.mark.parametrize("name", ["serve", "worker"])
def test_every_option_of_a_long_running_command_has_a_variable(name: str) -> None:
    """A container configures these by environment alone: each option has a variable."""
    command = _command(["om", "runtime", name])
    assert command is not None
    without = [p.name for p in command.params if p.name not in _envvars(command).values()]
    assert without == [], f"om runtime {name}: options without an environment variable"


def test_server_ports_and_probes_agree_with_the_app() -> None:
    routes = set(create_app().openapi()["paths"])
    servers = [c for c in CONTAINERS if c.command[:3] == ["om", "runtime", "serve"]]
    assert {c.where.split()[0] for c in servers} == {"compose", "kubernetes"}
    for server in servers:
        port = int(server.env["OMOPS_SERVER_PORT"])
        assert server.ports == [port], server.where
        assert server.env["OMOPS_SERVER_HOST"] == "0.0.0.0"
        assert server.env["OMOPS_SERVER_REQUIRE_KEYS"] == "1", "a public server needs API keys"
        assert server.probes, f"{server.where} has no health probe"
        for path, probe_port in server.probes.values():
            assert path in routes and probe_port == port, (server.where, path, probe_port)
        if "livenessProbe" in server.probes:
            assert server.probes["livenessProbe"][0] == "/health"
            assert server.probes["readinessProbe"][0] == "/ready"
    services = [d for d in _manifests() if d["kind"] == "Service"]
    assert [s["spec"]["ports"][0]["targetPort"] for s in services] == [8000]


def test_every_omops_container_gets_the_three_urls() -> None:
    for container in CONTAINERS:
        missing = {"OMOPS_CATALOG", "OMOPS_BLOBS", "OMOPS_BROKER"} - set(container.env)
        assert not missing, f"{container.where} lacks {sorted(missing)}"
