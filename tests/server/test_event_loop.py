"""Nothing blocks the event loop: model code, the catalog and blobs run in the thread pool."""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from omops.omega import Omega

from .support import Server

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))  # runtime.slow_models, also what the server imports
from runtime.slow_models import Sleepy  # noqa: E402

DELAY = 0.5


def test_health_answers_at_once_while_slow_predictions_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    om = Omega(home=str(home))
    X = pd.DataFrame({"x": np.arange(4.0)})  # noqa: N806
    om.models.put(Sleepy().fit(X, np.arange(4.0)).set_params(delay=DELAY), "sleepy")
    om.close()
    body = {"columns": ["x"], "data": [[1.0]]}
    predict = "/api/v1/model/sleepy/predict"
    with (
        Server(home, PYTHONPATH=str(TESTS)) as server,
        server.client() as client,
        httpx.Client(base_url=server.url) as prober,
    ):
        assert client.post(predict, json=body).status_code == 200  # loaded once
        idle = [_timed(prober) for _ in range(5)]
        with ThreadPoolExecutor(4) as pool:
            started = time.perf_counter()
            running = [pool.submit(client.post, predict, json=body) for _ in range(4)]
            time.sleep(0.1)  # all four in the server now
            busy = []
            while time.perf_counter() - started < DELAY * 0.8:
                busy.append(_timed(prober))
            answers = [f.result() for f in running]
            elapsed = time.perf_counter() - started
    assert all(a.status_code == 200 for a in answers)
    assert elapsed < 4 * DELAY, f"4 predictions of {DELAY} s ran one after the other: {elapsed}"
    # Under 50 ms; on a machine so loaded that even an idle /health takes longer,
    # within 3x of that (a blocked loop would wait the predictions' 0.5 s).
    limit = max(0.05, 3 * statistics.median(idle))
    assert statistics.median(busy) < limit, (busy, idle)


def _timed(client: httpx.Client) -> float:
    begin = time.perf_counter()
    assert client.get("/health").status_code == 200
    return time.perf_counter() - begin
