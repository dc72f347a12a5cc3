"""Fixtures for the server suite.

* ``store`` -- an Omega (SQLite, in the test's own home) holding the dataset
  'stats' and the fitted model 'forecast'; ``client`` serves it in-process
  through FastAPI's TestClient (which runs the ASGI app, not a socket), as a
  caller on this machine: from and to 127.0.0.1.
* ``served`` -- the same store behind a real ``om runtime serve`` process, one
  per test module; tests talk to it over HTTP and prepare objects through
  ``served_store``, a second Omega on the same home.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import Server, copy_home, local_client, prepare


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared home, made once; each test copies it (much faster than preparing)."""
    home = tmp_path_factory.mktemp("template")
    prepare(Omega(home=str(home))).catalog.close()
    return home


@pytest.fixture
def store(template_home: Path, tmp_path: Path) -> Iterator[Omega]:
    om = Omega(home=str(copy_home(template_home, tmp_path / "store")))
    yield om
    om.catalog.close()


@pytest.fixture
def client(store: Omega) -> Iterator[TestClient]:
    with local_client(create_app(store)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def served_home(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(template_home, tmp_path_factory.mktemp("served") / "home")


@pytest.fixture(scope="module")
def served_store(served_home: Path) -> Iterator[Omega]:
    om = Omega(home=str(served_home))
    yield om
    om.catalog.close()


@pytest.fixture(scope="module")
def served(served_home: Path, served_store: Omega) -> Iterator[Server]:
    """A keyless loopback server on ``served_home`` with a 1 MiB body limit."""
    with Server(served_home, "--max-body", str(1024 * 1024)) as server:
        yield server
