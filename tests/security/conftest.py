"""Fixtures for the attack cases: a prepared home, and real ``om runtime serve`` processes.

The helpers come from the server suite (``tests/server/support.py``): the
attacks are replayed over real HTTP against the real executable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server.support import Server, copy_home, prepare

from omops.omega import Omega


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("security-template")
    prepare(Omega(home=str(home))).catalog.close()
    return home


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    """A prepared home of this test's own: dataset 'stats', model 'forecast'."""
    return copy_home(template_home, tmp_path / "home")


@pytest.fixture
def store_om(home: Path) -> Iterator[Omega]:
    """An Omega on ``home``."""
    om = Omega(home=str(home))
    yield om
    om.catalog.close()


@pytest.fixture(scope="module")
def keyless(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: `om runtime serve` on loopback, no keys."""
    home = copy_home(template_home, tmp_path_factory.mktemp("keyless") / "home")
    with Server(home) as server:
        yield server
