"""A password and a token used by datasets appear nowhere: not in metadata, listings,
logs, REST or CLI output, nor in any file of the store (catalog database, blobs).

The password is MariaDB's real one (a wrong one is refused by the server), the
token is sent to a real HTTP server; both reach their servers and nothing else.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import httpx
import pytest
from server.support import Server, run_om

import omops

from .support import Database, FileServer


def _everything_under(folder: Path) -> list[tuple[str, bytes]]:
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            found.append((str(path), path.read_bytes()))
    return found


@pytest.fixture
def home() -> Path:
    return Path(os.environ["OMOPS_HOME"])


def test_secrets_appear_in_no_output_and_no_file(
    home: Path, mariadb: Database, http: FileServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    token = f"Tok-{uuid.uuid4().hex}"
    secrets = [mariadb.password, token]
    om = omops.get_omega()
    om.secrets.put("user", mariadb.secrets["user"])
    om.secrets.put("password", mariadb.password)
    om.secrets.put("token", token)
    seen: list[str] = []

    # Python
    seen.append(repr(om.datasets.put(mariadb.template, "salesdb")))
    seen.append(repr(om.datasets.put(f"{http.url}/orders.csv?token={{token}}", "csv")))
    seen.append(repr(om.datasets.metadata("salesdb").__dict__))
    seen.append(repr(om.datasets.metadata("csv").__dict__))
    seen.append(repr(om.datasets.list()) + repr(om.secrets.list()) + repr(om.secrets))
    seen.append(om.datasets.get("salesdb", table="orders").to_string())
    seen.append(om.datasets.get("csv", region="us").to_string())
    copy = om.datasets.put(mariadb.template, "copy", copy=True, sql="select * from orders")
    seen.append(repr(copy.__dict__))
    for bad in (
        lambda: om.datasets.get("salesdb", table="nope"),
        lambda: om.datasets.get("salesdb", sql="select nope"),
        lambda: om.datasets.get("salesdb", table="orders", secrets={"password": "x"}),
    ):
        with pytest.raises(omops.OmopsError) as info:
            bad()
        seen.append(f"{info.value!r} {info.value.__context__!r}")
    assert http.requests[-1].endswith(f"?token={token}")  # the token did reach its server
    om.close()

    # CLI, as real processes
    for args in (
        ("datasets", "list"),
        ("datasets", "list", "--json"),
        ("datasets", "metadata", "salesdb", "--json"),
        ("datasets", "metadata", "csv"),
        ("datasets", "get", "salesdb", "--table", "orders"),
        ("datasets", "get", "salesdb", "--table", "nope"),
        ("datasets", "get", "csv", "-o", "-"),
        ("secrets", "list"),
        ("secrets", "list", "--json"),
        ("config", "show"),
        ("config", "show", "--json"),
    ):
        done = run_om(home, *args)
        seen += [done.stdout, done.stderr]
        if args == ("datasets", "get", "salesdb", "--table", "orders"):
            assert done.returncode == 0 and "n50" in done.stdout, done.stderr

    # REST, from a real server process (keyless loopback: the owner, who may run ?sql=)
    with Server(home) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for path in (
            "/api/v1/dataset",
            "/api/v1/dataset/salesdb?table=orders&limit=5",
            "/api/v1/dataset/salesdb?table=nope",
            "/api/v1/dataset/salesdb?sql=select nope",
            "/api/v1/dataset/salesdb?sql=select count(*) as n from orders",
            "/api/v1/dataset/csv?limit=3",
            "/openapi.json",
        ):
            response = client.get(path)
            assert response.status_code < 500, response.text
            seen.append(response.text)
    seen.append(server.output())
    seen += [record.getMessage() + repr(record.args) for record in caplog.records]

    for secret in secrets:
        assert [text for text in seen if secret in text] == []
        files = [path for path, data in _everything_under(home) if secret.encode() in data]
        assert files == []
