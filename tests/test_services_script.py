"""``scripts/services.sh``: test runs sharing a machine never touch each other's services.

Each test drives the script in bash subprocesses, as ``scripts/test.sh`` and a
developer do, and starts real servers. The Debian packages must be installed
(``scripts/test.sh`` installs them when run as root); without them the tests fail
and say which are missing.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pymysql
import pytest
import redis
import sqlalchemy as sa
from kombu import Connection
from kombu.exceptions import OperationalError as KombuError

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("postgres", "rabbitmq", "redis", "mariadb")
URL_VARS = {
    "postgres": "OMOPS_TEST_POSTGRES",
    "rabbitmq": "OMOPS_TEST_BROKER",
    "redis": "OMOPS_TEST_REDIS",
    "mariadb": "OMOPS_TEST_MARIADB",
}


def _missing_packages() -> list[str]:
    missing = []
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing.append("postgresql")
    if not os.access("/usr/lib/rabbitmq/bin/rabbitmq-server", os.X_OK):
        missing.append("rabbitmq-server")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if not os.access("/usr/sbin/mariadbd", os.X_OK):
        missing.append("mariadb-server")
    return missing


@pytest.fixture(autouse=True)
def _packages() -> None:
    """As root the script installs missing packages; otherwise they must be there."""
    missing = _missing_packages()
    if missing and os.geteuid() != 0:
        pytest.fail(
            f"scripts/services.sh needs the Debian packages {', '.join(missing)}: install them "
            f"(sudo apt-get install {' '.join(missing)}) or run `bash scripts/test.sh` as root"
        )


def _env() -> dict[str, str]:
    # A shell that loaded some run's env must not make these runs share its dir.
    env = dict(os.environ)
    env.pop("OMOPS_SERVICES_DIR", None)
    return env


def _bash(script: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", f"set -euo pipefail\nsource scripts/services.sh\n{script}"],
        cwd=REPO,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _exports(stdout: str) -> dict[str, str]:
    lines = [line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("export ")]
    return dict(line.split("=", 1) for line in lines)


class Run:
    """One run of the script: its directory, URLs and the processes it started."""

    def __init__(self, stdout: str) -> None:
        self.env = _exports(stdout)
        self.dir = Path(self.env["OMOPS_SERVICES_DIR"])
        self.pids = {}
        for svc in SERVICES:
            pidfile = self.dir / f"{svc}.pid"
            if pidfile.exists():
                self.pids[svc] = int(pidfile.read_text().split()[0])
        # Every process of the run: the servers and their children (PostgreSQL's
        # backends, the Erlang VM's helpers), psutil remembers their start times.
        self.procs = []
        for pid in self.pids.values():
            proc = psutil.Process(pid)
            self.procs += [proc, *proc.children(recursive=True)]

    def port(self, svc: str) -> int:
        return int(self.env[URL_VARS[svc]].rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "scripts/services.sh", "stop", str(self.dir)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )


def _start(*services: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``bash scripts/services.sh start``: the services outlive the command."""
    return subprocess.Popen(
        ["bash", "scripts/services.sh", "start", *services],
        cwd=REPO,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, cleanup: list[Run]) -> Run:
    """Wait for a start; what it started is stopped at the end of the test."""
    out, err = proc.communicate(timeout=180)
    if "OMOPS_SERVICES_DIR=" in out:
        cleanup.append(Run(out))
    assert proc.returncode == 0, f"start failed (rc {proc.returncode}):\n{out}\n{err}"
    return cleanup[-1]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _answers(svc: str, url: str) -> bool:
    try:
        if svc == "postgres":
            with psycopg.connect(url, connect_timeout=5) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        if svc == "mariadb":
            parsed = sa.make_url(url)
            conn = pymysql.connect(
                host=parsed.host,
                port=parsed.port,
                user=parsed.username,
                database=parsed.database,
                connect_timeout=5,
            )
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                    return cursor.fetchone() == (1,)
            finally:
                conn.close()
        if svc == "redis":
            client = redis.Redis.from_url(url, socket_timeout=5)
            try:
                return client.ping() is True
            finally:
                client.close()
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            return conn.connected
    except (OSError, psycopg.OperationalError, pymysql.Error, redis.ConnectionError, KombuError):
        return False


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def cleanup() -> Iterator[list[Run]]:
    """Runs a test started; stopped at the end even when the test failed."""
    runs: list[Run] = []
    yield runs
    for run in runs:
        run.stop()


def test_two_runs_get_their_own_ports_and_stop_only_their_own(cleanup: list[Run]) -> None:
    # Started at the same moment, as two test commands on one machine would.
    starting = [_start(*SERVICES), _start(*SERVICES)]
    for proc in starting:  # both done before either may fail the test (small outputs)
        proc.wait(timeout=180)
    a, b = [_finish(proc, cleanup) for proc in starting]

    assert a.dir != b.dir
    ports = [run.port(svc) for run in (a, b) for svc in SERVICES]
    nodes = [(run.dir / "rabbitmq" / "node").read_text().split() for run in (a, b)]
    ports += [int(dist) for _, dist in nodes]
    assert len(set(ports)) == len(ports), ports
    assert nodes[0][0] != nodes[1][0]  # two RabbitMQ nodes named alike refuse to start
    for run in (a, b):
        assert sorted(run.pids) == sorted(SERVICES)
        assert (run.dir / "mariadb" / "mariadbd.sock").is_socket()  # its own, not the system's
        for svc in SERVICES:
            assert _answers(svc, run.env[URL_VARS[svc]]), (svc, run.env)

    stopped = a.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert not a.dir.exists()
    assert [p.pid for p in a.procs if _alive(p)] == []
    for svc in SERVICES:
        assert _refused(a.port(svc)), svc
        assert _answers(svc, b.env[URL_VARS[svc]]), svc
    assert all(_alive(p) for p in b.procs)
    # Nor are the services this test session itself runs on disturbed.
    for svc, var in URL_VARS.items():
        if os.environ.get(var):
            assert _answers(svc, os.environ[var]), var

    stopped = b.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert not b.dir.exists()
    assert [p.pid for p in b.procs if _alive(p)] == []


def test_a_port_in_use_is_an_error_never_a_service_to_reuse(cleanup: list[Run]) -> None:
    a = _finish(_start("redis"), cleanup)
    # Pinned to the port a's Redis answers on: the old script reused that Redis
    # (and stopped it at exit); now the start fails and says why.
    second = _start("redis", env={**_env(), "OMOPS_REDIS_PORT": str(a.port("redis"))})
    out, err = second.communicate(timeout=60)
    assert second.returncode != 0, out
    assert "redis failed to start" in err
    assert "Address already in use" in err  # the tail of its log
    assert "OMOPS_TEST_REDIS" not in _exports(out)
    assert _answers("redis", a.env["OMOPS_TEST_REDIS"])
    assert all(_alive(p) for p in a.procs)
    # The failed run left nothing behind.
    failed_dir = Path(re.search(r"\(run dir (.+)\)", err).group(1))
    assert failed_dir != a.dir
    assert not failed_dir.exists()


def test_ctrl_c_stops_what_the_run_started(cleanup: list[Run]) -> None:
    # What scripts/test.sh does, interrupted while its tests run.
    proc = _bash(
        "stop_services_on_exit\nstart_services postgres redis\nservices_env\nsleep 120",
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = []
    while not any(line.startswith("export OMOPS_TEST_REDIS") for line in lines):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    if proc.poll() is not None:
        pytest.fail(f"start failed:\n{''.join(lines)}\n{proc.stderr.read() if proc.stderr else ''}")
    run = Run("".join(lines))
    cleanup.append(run)
    assert all(_alive(p) for p in run.procs)

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert [p.pid for p in run.procs if _alive(p)] == []
    assert not run.dir.exists()
