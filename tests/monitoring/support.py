"""Synthetic production traffic where the drift is known, and a real webhook receiver.

* :func:`training` -- the reference: ``a``, ``b`` standard normal, ``c`` one of
  ``x``/``y``/``z``; :func:`store` fits a pipeline (one-hot ``c``) on it and stores
  it as model ``m`` with the training inputs as dataset ``train_X``.
* :func:`predict` -- predictions through the one action path (what REST,
  the runtime and workers call), in calls of at most 100 rows so every row is
  logged whole.
* :class:`Receiver` -- an HTTP server on a free loopback port that records
  every POST (or answers slowly, or with an error).
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from omops.omega import Omega
from omops.runtime.actions import perform

MODEL, REFERENCE = "m", "train_X"


def training(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], n),
        }
    )


def traffic(
    n: int = 300, seed: int = 1, *, shift: float = 0.0, new: str | None = None
) -> pd.DataFrame:
    """Inputs from the training distribution; ``a`` moved by ``shift``; ``c`` all ``new``."""
    frame = training(n, seed)
    frame["a"] = frame["a"] + shift
    if new is not None:
        frame["c"] = new
    return frame


@functools.cache
def _fitted() -> Any:
    frame = training()
    encoder = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["c"]), remainder="passthrough"
    )
    return make_pipeline(encoder, LogisticRegression()).fit(frame, (frame["a"] > 0).astype(int))


def store(om: Omega, *, track: bool = True, **options: Any) -> Any:
    """Model ``m``, dataset ``train_X``; tracked by experiment ``prod`` with the reference."""
    om.datasets.put(training(), REFERENCE, append=False)
    om.models.put(_fitted(), MODEL)
    exp = om.runtime.experiment("prod")
    if track:
        exp.track(MODEL, reference=REFERENCE, **options)
    return exp


def predict(om: Omega, frame: pd.DataFrame, model: str = MODEL) -> None:
    for start in range(0, len(frame), 100):
        perform(om, model, "predict", frame.iloc[start : start + 100])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """A webhook receiver on 127.0.0.1: records JSON bodies, answers ``status`` after ``delay``."""

    def __init__(self, *, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        received = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.headers.append(dict(self.headers))
                received.paths.append(self.path)
                received.bodies.append(orjson.loads(body))
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cret-token"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def age(om: Omega, seconds: float) -> None:
    """Move every logged event ``seconds`` into the past (traffic from earlier)."""
    import sqlalchemy as sa

    from omops.catalog._tables import events
    from omops.runtime._tracking import flush_events

    flush_events(om)
    with om.catalog.write_transaction() as conn:
        conn.execute(sa.update(events).values(dt=events.c.dt - seconds))
