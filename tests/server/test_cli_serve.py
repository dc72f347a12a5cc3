"""``om runtime serve`` and ``om auth``, run as the real executables."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from typer.testing import CliRunner, Result

import omops
from omops.cli._runtime import _is_loopback, _needs_keys
from omops.cli.app import app
from omops.omega import Omega

from .support import (
    PREDICT,
    X_SPLIT,
    Server,
    assert_error,
    copy_home,
    free_port,
    prepare,
    run_om,
    wait_for_task,
)


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    return copy_home(template_home, tmp_path / "home")


def om_auth(home: Path, *args: str) -> Result:
    """``om auth ARGS`` in-process (typer's CliRunner) against ``home``."""
    omops.reset()
    try:
        return CliRunner().invoke(app, ["auth", *args], env={"OMOPS_HOME": str(home)})
    finally:
        omops.reset()


def create_key(home: Path, *args: str) -> tuple[str, str]:
    """``om auth create-key ARGS``: (key id, token)."""
    done = om_auth(home, "create-key", *args)
    assert done.exit_code == 0, done.output
    token = done.stdout.strip()
    assert token.startswith("omk_") and "\n" not in token
    key_id = token.split("_")[1]
    assert f"key {key_id}" in done.stderr and "not shown again" in done.stderr
    return key_id, token


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback
    assert _needs_keys(host, require_keys=None, insecure=False) is not loopback
    assert _needs_keys(host, require_keys=None, insecure=True) is False
    assert _needs_keys(host, require_keys=True, insecure=True) is True


def test_a_public_host_without_keys_refuses_to_start(home: Path) -> None:
    port = free_port("0.0.0.0")
    done = run_om(home, "runtime", "serve", "--host", "0.0.0.0", "--port", str(port))
    assert done.returncode == 1, done.stderr
    assert "none exists" in done.stderr and "om auth create-key" in done.stderr
    assert "--insecure" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)


def test_no_require_keys_on_a_public_host_needs_insecure(home: Path) -> None:
    omops.reset()
    done = CliRunner().invoke(
        app,
        ["runtime", "serve", "--host", "0.0.0.0", "--no-require-keys"],
        env={"OMOPS_HOME": str(home)},
    )
    assert done.exit_code == 1 and "pass --insecure" in done.stderr, done.output


def test_insecure_serves_a_public_host_without_keys(home: Path) -> None:
    with Server(home, "--insecure", host="0.0.0.0") as server, server.client() as http:
        assert [m["name"] for m in http.get("/api/v1/model").json()["models"]] == ["forecast"]
        assert http.put("/api/v1/dataset/open", json=[{"a": 1}]).status_code == 200
        assert "--insecure: anyone who reaches" in server.output()


def test_with_a_key_a_public_host_starts_and_requires_it(home: Path) -> None:
    key_id, token = create_key(home, "--bucket", "default", "--role", "read", "--note", "ci")
    assert [k["id"] for k in orjson.loads(om_auth(home, "list", "--json").stdout)] == [key_id]
    with Server(home, host="0.0.0.0") as server:
        assert "API keys required" in server.output()
        with server.client() as anonymous:
            assert_error(anonymous.get("/api/v1/model"), 401, "needs an API key")
        with server.client(Authorization=f"Bearer {token}") as http:
            assert http.get("/api/v1/model/forecast").json()["input_columns"] == ["x"]
            assert_error(http.delete("/api/v1/dataset/stats"), 403, "may not write")
            done = om_auth(home, "revoke", key_id)
            assert done.exit_code == 0 and f"revoked key {key_id}" in done.stdout
            deadline = time.monotonic() + 10  # the server trusts a verified key for 5 s
            while http.get("/api/v1/model").status_code == 200:
                assert time.monotonic() < deadline, "a revoked key kept working"
                time.sleep(0.25)
            assert_error(http.get("/api/v1/model"), 401, "revoked")
    assert om_auth(home, "list", "--json").stdout.strip() == "[]"
    revoked = om_auth(home, "list", "--revoked")
    assert key_id in revoked.stdout and "ci" in revoked.stdout


def test_auth_commands_refuse_bad_arguments(home: Path) -> None:
    done = om_auth(home, "create-key", "--bucket", "x", "--role", "root")
    assert done.exit_code == 1 and "role 'root' is not one of" in done.stderr
    done = om_auth(home, "revoke", "nope")
    assert done.exit_code == 1 and "no active API key 'nope'" in done.stderr
    assert om_auth(home, "create-key", "--role", "read").exit_code == 2


@pytest.mark.postgres
def test_two_workers_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The deployment at scale: several uvicorn workers sharing a PostgreSQL catalog."""
    store = prepare(Omega(catalog=postgres_url, blobs=str(tmp_path / "blobs")))
    try:
        with (
            Server(tmp_path, "--workers", "2", OMOPS_CATALOG=postgres_url) as server,
            server.client() as http,
        ):
            workers = psutil.Process(server.proc.pid).children(recursive=True)
            assert len([p for p in workers if "python" in p.name().lower()]) >= 2
            for _ in range(8):  # requests land on either worker
                assert http.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]
            assert http.put("/api/v1/dataset/shared", json=[{"a": 1}]).status_code == 200
            for _ in range(4):
                assert http.get("/api/v1/dataset/shared").json() == [{"a": 1}]
            fitted = http.post(
                "/api/v1/model/forecast/fit", params={"datax": "stats[x]", "datay": "stats[y]"}
            )
            done = wait_for_task(http, fitted.headers["location"])
            assert done["result"]["revision"] == store.models.metadata("forecast").revision
    finally:
        store.catalog.close()
