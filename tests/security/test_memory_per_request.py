"""One request cannot take gigabytes: reads are pushed down and streamed, bodies bounded.

Seen: ``GET /api/v1/dataset/{name}`` built the whole frame and its JSON before
applying ``limit``; 10M rows x 3 columns peaked at 2.06 GB server RSS for one
request. A 100,000-column body took 11.5 s to PUT. Now reads apply filters,
columns and ``limit``/``offset`` while reading and stream the answer batch by
batch; more rows than ``--max-rows`` and bodies of more columns than
``--max-columns`` are refused with 413.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import psutil
import pyarrow as pa
import pytest
from server.support import Server, assert_error

from omops.omega import Omega

ROWS = 10_000_000
PARTS = 10
MAX_RSS = 500 * 2**20


@pytest.fixture(scope="module")
def big_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'big': 10M rows x 3 columns (a, b, c) in 10 appended parts, put in a few seconds."""
    home = tmp_path_factory.mktemp("memory") / "home"
    om = Omega(home=str(home))
    rng = np.random.default_rng(7)
    rows = ROWS // PARTS
    for part in range(PARTS):
        frame = pd.DataFrame(
            {
                "a": rng.random(rows),
                "b": np.arange(part * rows, (part + 1) * rows),
                "c": rng.random(rows) * 1e6,
            }
        )
        om.datasets.put(frame, "big", append=part > 0)
    om.close()
    return home


@pytest.fixture(scope="module")
def server(big_home: Path) -> Iterator[Server]:
    with Server(big_home) as served:
        yield served


class Peak:
    """The highest RSS of a process, sampled every 20 ms while in the block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.rss = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss = max(self.rss, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def read_all(server: Server, accept: str, **params: str) -> tuple[int, int, int, float]:
    """Stream one read to its end: (status, bytes, peak server RSS, seconds)."""
    started = time.perf_counter()
    size = 0
    with Peak(server.proc.pid) as peak:
        with httpx.stream(
            "GET",
            f"{server.url}/api/v1/dataset/big",
            headers={"Accept": accept},
            params=params,
            timeout=600,
        ) as response:
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
    return response.status_code, size, peak.rss, time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.parametrize(
    ("accept", "params"),
    [
        ("application/vnd.apache.arrow.stream", {}),
        ("application/json", {}),
        ("application/x-ndjson", {}),
        ("application/json", {"b__gte": "5000000"}),
    ],
    ids=["arrow", "json", "ndjson", "json-filtered"],
)
def test_a_10m_row_read_keeps_the_server_under_500_mb(
    server: Server, accept: str, params: dict[str, str]
) -> None:
    status, size, rss, seconds = read_all(server, accept, **params)
    print(
        f"{accept} {params}: {size / 2**20:.0f} MiB in {seconds:.1f} s, "
        f"server peak RSS {rss / 2**20:.0f} MiB"
    )
    assert status == 200
    assert size > 100 * 2**20  # all of it came, and more than the limit on memory
    assert rss < MAX_RSS


def test_a_window_reads_only_its_rows(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        started = time.perf_counter()
        rows = http.get("/api/v1/dataset/big", params={"offset": "9999998", "limit": "5"})
        seconds = time.perf_counter() - started
        assert [row["b"] for row in rows.json()] == [9_999_998, 9_999_999]
        answer = http.get(
            "/api/v1/dataset/big",
            params={"offset": "3000000", "limit": "3"},
            headers={"Accept": "application/vnd.apache.arrow.stream"},
        )
        table = pa.ipc.open_stream(answer.content).read_all()
        assert table.column("b").to_pylist() == [3_000_000, 3_000_001, 3_000_002]
    assert seconds < 5  # the last part's last row group only, not 10M rows


def test_more_rows_than_allowed_is_a_413_before_reading(big_home: Path) -> None:
    with Server(big_home, "--max-rows", "1000000") as server, server.client() as http:
        with Peak(server.proc.pid) as peak:
            response = http.get("/api/v1/dataset/big")
        assert_error(response, 413, "matches 10000000 rows", "at most 1000000", "limit=")
        assert_error(http.get("/api/v1/dataset/big", params={"b__lt": "2000000"}), 413)
        assert len(http.get("/api/v1/dataset/big", params={"limit": "1000"}).json()) == 1000
        assert peak.rss < MAX_RSS


def test_a_100000_column_body_is_a_413_at_once(server: Server) -> None:
    names = [f"c{i}" for i in range(100_000)]
    body = orjson.dumps({"columns": names, "data": [[0] * len(names)]})
    with server.client() as http:
        started = time.perf_counter()
        response = http.put(
            "/api/v1/dataset/wide", content=body, headers={"Content-Type": "application/json"}
        )
        seconds = time.perf_counter() - started
        assert_error(response, 413, "at most 10000 per request")
        assert_error(http.get("/api/v1/dataset/wide"), 404)
    assert seconds < 2  # counted, not built: 11.5 s before
