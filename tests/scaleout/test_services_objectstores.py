"""scripts/services.sh starts moto and Azurite per run: free ports, stopped by their run only."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from .support import Services


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def test_two_runs_get_their_own_object_stores_and_stop_only_theirs() -> None:
    runs = [Services(), Services()]
    try:
        with ThreadPoolExecutor(2) as pool:
            envs = list(pool.map(lambda run: dict(run.start("moto", "azurite")), runs))
        urls = [(env["OMOPS_TEST_S3"], env["OMOPS_TEST_AZURE"]) for env in envs]
        ports = {urlsplit(u).port for pair in urls for u in pair}
        assert len(ports) == 4, urls
        assert all(_answers(u) for pair in urls for u in pair)

        runs[0].close()  # the first run stops its services ...
        assert not any(_answers(u) for u in urls[0])
        assert all(_answers(u) for u in urls[1])  # ... and only those
        assert not runs[0].dir.exists()
    finally:
        for run in runs:
            run.close()
    assert not any(_answers(u) for pair in urls for u in pair)
