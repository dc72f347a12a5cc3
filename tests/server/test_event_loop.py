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
    with Server(home, PYTHONPATH=str(TESTS)) as server, server.client() as client:
        assert client.post(predict, json=body).status_code == 200  # loaded once
        with ThreadPoolExecutor(4) as pool:
            started = time.perf_counter()
            running = [pool.submit(client.post, predict, json=body) for _ in range(4)]
            time.sleep(0.1)  # all four in the server now
            health = []
            while time.perf_counter() - started < DELAY * 0.8:
                begin = time.perf_counter()
                assert httpx.get(f"{server.url}/health").status_code == 200
                health.append(time.perf_counter() - begin)
            answers = [f.result() for f in running]
            elapsed = time.perf_counter() - started
    assert all(a.status_code == 200 for a in answers)
    assert elapsed < 4 * DELAY, f"4 predictions of {DELAY} s ran one after the other: {elapsed}"
    assert statistics.median(health) < 0.05, health
