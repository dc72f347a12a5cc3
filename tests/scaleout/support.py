"""Helpers for the scale-out suite: private services started through scripts/services.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Services:
    """Services of this test's own (a private run dir of scripts/services.sh).

    Only these may be stopped by a test: the shared ones (OMOPS_TEST_*) never are.
    """

    def __init__(self) -> None:
        # In the checkout's .omops-test/ as services.sh's own runs: the service users
        # (postgres, rabbitmq) must reach it, and pytest's tmp dirs are root's alone.
        self.dir = REPO / ".omops-test" / f"run-scaleout-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env: dict[str, str] = {}

    def _bash(self, script: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
        env["OMOPS_SERVICES_DIR"] = str(self.dir)
        env.setdefault("OMOPS_MOTO_SERVER", str(Path(sys.executable).parent / "moto_server"))
        return subprocess.run(
            ["bash", "-c", f"set -uo pipefail\nsource scripts/services.sh\n{script}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *names: str) -> dict[str, str]:
        done = self._bash(f"start_services {' '.join(names)}")
        assert done.returncode == 0, f"services.sh failed:\n{done.stdout}\n{done.stderr}"
        lines = (self.dir / "env").read_text().splitlines()
        for line in lines:
            name, _, value = line.removeprefix("export ").partition("=")
            self.env[name] = value
        return self.env

    def stop(self, name: str) -> None:
        done = self._bash(f"stop_{name}")
        assert done.returncode == 0, done.stderr

    def close(self) -> None:
        if self.dir.exists():
            self._bash("stop_services")
