"""Several hosts, for real: Linux network namespaces joined by a bridge.

Six namespaces, all made (and removed) by this test under names of its own:

* ``<id>-sw``: the switch, a bridge each host's veth cable plugs into;
* ``<id>-svc`` (10.77.0.1): PostgreSQL, RabbitMQ and moto (S3), Debian's
  PostgreSQL and RabbitMQ and the venv's moto, each with its own data dir;
* ``<id>-w1``, ``<id>-w2`` (.11, .12): one Celery worker each, with host
  names of their own (a UTS namespace each);
* ``<id>-srv`` (.20): ``om runtime serve`` with API keys;
* ``<id>-cli`` (.30): the client (tests/scaleout/netns_client.py).

No namespace has a route anywhere else, and the test process itself talks to
none of these addresses: every request goes between the namespaces. The
client stores data and a model, fits and predicts on the workers, reads the
prediction over REST; then a slow fit starts, the host running it loses its
link (``ip link set ... down``), RabbitMQ misses its heartbeats (4 s, set in
its config) and requeues the unacknowledged task, and the other worker
completes it. Teardown kills every process in the namespaces (``ip netns
pids``: they are all this test's), deletes the namespaces (their veths go
with them) and the data dir, also when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import REPO

pytestmark = pytest.mark.slow

SUBNET = "10.77.0"
HOSTS = {"svc": 1, "w1": 11, "w2": 12, "srv": 20, "cli": 30}
PG_PORT, AMQP_PORT, S3_PORT, HTTP_PORT = 5432, 5672, 5000, 8000
BIN = Path(sys.executable).parent
TESTS = REPO / "tests"


def _run(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run the tests with `bash scripts/test.sh`")
    return found[-1].parent


class Network:
    """The namespaces, their cables, and the processes started in them."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("ip"):
            pytest.fail("the multi-host test needs root and iproute2 (`ip`), as in CI")
        self.id = f"om{uuid.uuid4().hex[:6]}"
        self.dir = REPO / ".omops-test" / f"netns-{self.id}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.made: list[str] = []

    def ns(self, host: str) -> str:
        return f"{self.id}-{host}"

    def addr(self, host: str) -> str:
        return f"{SUBNET}.{HOSTS[host]}"

    def cable(self, host: str) -> str:
        """The host's end of its cable (unique per test run: made in the root namespace)."""
        return f"{self.id}{HOSTS[host]}h"

    # -- set up ------------------------------------------------------------

    def build(self) -> None:
        self.dir.mkdir(parents=True)
        switch = self.ns("sw")
        for name in [switch, *(self.ns(h) for h in HOSTS)]:
            _run("ip", "netns", "add", name)
            self.made.append(name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", switch, "link", "set", "br0", "up")
        for host in HOSTS:
            here, there = self.cable(host), f"{self.id}{HOSTS[host]}s"
            _run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
            _run("ip", "link", "set", there, "netns", switch)  # both ends leave the root
            _run("ip", "link", "set", here, "netns", self.ns(host))  # namespace at once
            _run("ip", "-n", switch, "link", "set", there, "master", "br0", "up")
            _run("ip", "-n", self.ns(host), "addr", "add", f"{self.addr(host)}/24", "dev", here)
            _run("ip", "-n", self.ns(host), "link", "set", here, "up")

    def start(
        self, name: str, host: str, args: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = (self.dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *args],
            env=env or self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def in_ns(self, host: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", self.ns(host), *args, timeout=timeout)

    def wait_port(self, name: str, host: str, port: int, timeout: float = 120) -> None:
        """Until something listens on the host's address and port (asked from that host)."""
        probe = (
            "import socket,sys\ns=socket.socket()\ns.settimeout(1)\n"
            f"sys.exit(s.connect_ex(('{self.addr(host)}', {port})))"
        )
        deadline = time.monotonic() + timeout
        while True:
            done = _run(
                "ip", "netns", "exec", self.ns(host), sys.executable, "-c", probe, check=False
            )
            if done.returncode == 0:
                return
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not listen on {port}:\n{self.log(name)}")
            time.sleep(0.3)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OMOPS_", "AWS_")) and "PROXY" not in k.upper()
        }
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *([path] if path else [])])
        env["HOME"] = str(self.dir)
        env.update(extra)
        return env

    # -- tear down ---------------------------------------------------------

    def close(self) -> None:
        for name in self.made:  # everything in our namespaces is ours
            done = _run("ip", "netns", "pids", name, check=False)
            for pid in done.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for name in reversed(self.made):
            deadline = time.monotonic() + 10
            while _run("ip", "netns", "pids", name, check=False).stdout.split():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            _run("ip", "netns", "del", name, check=False)  # takes its veth ends along
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network()
    try:
        net.build()
        yield net
    finally:
        net.close()
        leftovers = _run("ip", "netns", "list").stdout
        assert net.id not in leftovers, leftovers
        assert net.id not in _run("ip", "link").stdout


def _start_services(net: Network) -> dict[str, str]:
    svc = net.addr("svc")
    # PostgreSQL, as the postgres user, trusting the test subnet only.
    pg = _pg_bin()
    data = net.dir / "pg"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres")
    os.chmod(net.dir, 0o755)
    _run("runuser", "-u", "postgres", "--", str(pg / "initdb"), "-D", str(data), "-U", "omops",
         "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
    with (data / "pg_hba.conf").open("a") as fh:
        fh.write(f"host all all {SUBNET}.0/24 trust\n")
    net.start("postgres", "svc", ["runuser", "-u", "postgres", "--", str(pg / "postgres"),
              "-D", str(data), "-p", str(PG_PORT), "-k", "", "-c", f"listen_addresses={svc}",
              "-c", "fsync=off"])  # fmt: skip
    # RabbitMQ, as the rabbitmq user, with a 4 s heartbeat: a host that went
    # silent loses its connection (and its unacknowledged task) within seconds.
    base = net.dir / "rabbitmq"
    base.mkdir()
    (base / "enabled_plugins").write_text("[].")
    (base / "rabbitmq.conf").write_text("loopback_users = none\nheartbeat = 4\n")
    shutil.chown(base, "rabbitmq")
    rabbit_env = net.env(
        HOME=str(base),
        RABBITMQ_NODENAME=f"{net.id}@localhost",
        RABBITMQ_NODE_IP_ADDRESS=svc,
        RABBITMQ_NODE_PORT=str(AMQP_PORT),
        RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
        RABBITMQ_LOG_BASE=str(base / "log"),
        RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
        RABBITMQ_ALLOW_INPUT="1",
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-noinput +B i",
    )
    net.start("rabbitmq", "svc", ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq",
              "--init-groups", "--", "/usr/lib/rabbitmq/bin/rabbitmq-server"], env=rabbit_env)  # fmt: skip
    # moto, the S3 server.
    net.start("moto", "svc", [str(BIN / "moto_server"), "-H", svc, "-p", str(S3_PORT)])
    net.wait_port("postgres", "svc", PG_PORT, 60)
    net.in_ns("svc", str(pg / "createdb"), "-h", svc, "-p", str(PG_PORT), "-U", "omops", "omops")
    net.wait_port("moto", "svc", S3_PORT, 60)
    net.wait_port("rabbitmq", "svc", AMQP_PORT, 180)
    return {
        "OMOPS_CATALOG": f"postgresql://omops@{svc}:{PG_PORT}/omops",
        "OMOPS_BLOBS": f"s3://{net.id}/blobs",
        "OMOPS_BROKER": f"amqp://guest:guest@{svc}:{AMQP_PORT}//",
        "AWS_ENDPOINT_URL": f"http://{svc}:{S3_PORT}",
        "AWS_ACCESS_KEY_ID": "netns",
        "AWS_SECRET_ACCESS_KEY": "netns-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _client(net: Network, settings: dict[str, str], phase: str, **extra: str) -> list[dict]:
    script = Path(__file__).with_name("netns_client.py")
    done = subprocess.run(
        ["ip", "netns", "exec", net.ns("cli"), sys.executable, str(script), phase],
        env=net.env(**settings, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"client {phase} failed:\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_client_server_workers_and_store_on_five_hosts(network: Network) -> None:
    net = network
    begin = time.monotonic()
    settings = _start_services(net)
    token = _client(net, settings, "init")[0]["token"]

    queue = f"netns-{net.id}"
    for host in ("w1", "w2"):
        name = f"{host}-{net.id}"  # the host name the worker sees (and reports)
        net.start(f"worker-{host}", host, ["unshare", "--uts", "sh", "-c",
                  'hostname "$0" && exec "$@"', name, str(BIN / "om"), "runtime", "worker",
                  "--label", queue, "--loglevel", "WARNING"],
                  env=net.env(**settings, OMOPS_WORKER_CONCURRENCY="1"))  # fmt: skip
    server_env = net.env(**settings, OMOPS_SERVER_HOST=net.addr("srv"),
                         OMOPS_SERVER_PORT=str(HTTP_PORT))  # fmt: skip
    net.start("server", "srv", [str(BIN / "om"), "runtime", "serve"], env=server_env)
    net.wait_port("server", "srv", HTTP_PORT, 90)

    extra = {
        "OMOPS_NETNS_QUEUE": queue,
        "OMOPS_NETNS_SERVER": f"http://{net.addr('srv')}:{HTTP_PORT}",
        "OMOPS_NETNS_TOKEN": token,
        "OMOPS_NETNS_MARKER": str(net.dir / "fits"),
    }
    flow = _client(net, settings, "flow", **extra)[0]
    assert flow["fitted"]["model"] == "clf"
    assert flow["on_workers"][:2] == [0, 0] and flow["on_workers"][-1] == 1
    assert flow["rest_status"] == 200, flow["rest"]
    assert flow["rest"]["result"] == [0, 1]
    assert flow["stored_status"] == 200 and flow["stored"]["data"][-1][-1] == 1
    assert flow["ready"]["status"] == "ready", flow["ready"]
    hosts = {info["host"]: info["queues"] for info in flow["workers"].values()}
    assert hosts == {f"w1-{net.id}": [queue], f"w2-{net.id}": [queue]}, flow["workers"]

    # A slow fit; once it runs, its host loses its link.
    cutover = subprocess.Popen(
        ["ip", "netns", "exec", net.ns("cli"), sys.executable,
         str(Path(__file__).with_name("netns_client.py")), "cutover"],
        env=net.env(**settings, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    net.procs["cutover"] = cutover
    assert cutover.stdout is not None
    first = json.loads(cutover.stdout.readline() or "{}")
    assert "running_on" in first, f"{first}\n{cutover.stderr.read() if cutover.stderr else ''}"
    doomed = first["running_on"].split("-", 1)[0]  # w1 or w2
    survivor = "w2" if doomed == "w1" else "w1"
    cut = time.monotonic()
    net.in_ns(doomed, "ip", "link", "set", net.cable(doomed), "down")

    out, err = cutover.communicate(timeout=240)
    assert cutover.returncode == 0, f"{out}\n{err}\n{net.log('worker-' + survivor)}"
    done = json.loads(out.strip().splitlines()[-1])
    assert done["fitted_on"] == f"{survivor}-{net.id}", done
    assert done["result"]["model"] == "slow"
    # Both hosts ran the fit: the cut one first, then the survivor, redelivered.
    fits = (net.dir / "fits").read_text().split()
    assert fits == [f"{doomed}-{net.id}", f"{survivor}-{net.id}"]
    assert time.monotonic() - cut < 60  # not the cut host's 60 s sleep: the broker noticed
    print(f"multi-host test: {time.monotonic() - begin:.1f} s, redelivered after "
          f"{time.monotonic() - cut:.1f} s")  # fmt: skip
