"""A real ``om runtime worker`` for the tracking tests (after tests/runtime/support.py).

The worker shares a SQLite catalog and a blob folder with the test process and
consumes a queue private to this test session, so no other suite's worker
(another catalog) ever takes its tasks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from omops.errors import TaskTimeout
from omops.omega import Omega

OM = Path(sys.executable).parent / "om"
QUEUE = f"omops-tracking-{uuid.uuid4().hex[:8]}"
START_S = 90.0


class Worker:
    """``om runtime worker --label QUEUE`` in its own process group, configured like ``om``."""

    def __init__(self, om: Omega, home: Path, *, broker: str) -> None:
        self.om, self.broker = om, broker
        self.log = home / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
        env.update(
            OMOPS_HOME=str(home),
            OMOPS_CATALOG=om.catalog.url,
            OMOPS_BLOBS=str(home / "blobs"),
            OMOPS_BROKER=broker,
        )
        args = [
            str(OM),
            "runtime",
            "worker",
            f"--label={QUEUE}",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self) -> int:
        """Block until the worker answers a ping; returns the pid of its pool process."""
        token = uuid.uuid4().hex
        result = self.om.runtime.require(QUEUE).ping(token)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                answer = result.get(timeout=1)
            except TaskTimeout:
                continue
            assert answer["pong"] == token
            return answer["pid"]
        pytest.fail(f"worker did not answer a ping within {START_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL whatever is left of the process group; drop the queue."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        from kombu import Connection

        with Connection(self.broker, connect_timeout=10) as conn:
            with contextlib.suppress(Exception):  # never declared: nothing to delete
                conn.default_channel.queue_delete(QUEUE)


def wait_for(condition, what: str, timeout: float = 30.0):
    """Poll ``condition()`` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False and not getattr(value, "empty", False):
            return value
        time.sleep(0.1)
    pytest.fail(f"waited {timeout} s for {what}")
