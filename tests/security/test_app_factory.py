"""The app outside ``om runtime serve`` is safe by default, under any ASGI server.

``uvicorn omops.server.app:app_from_environment --factory --host 0.0.0.0``
used to serve every bucket without keys. Now the app itself refuses
non-loopback clients when no keys are required (unless told it is insecure),
and requires keys whenever the catalog has an active one.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from server.support import assert_error, free_port, om_env

from omops.omega import Omega

#: Made up for a dummy interface when this machine has no non-loopback IPv4 address.
_DUMMY = ("omopsdummy0", "198.51.100.77")


def _routable_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET:
                ip = ipaddress.ip_address(address.address)
                if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                    return address.address
    return None


@pytest.fixture(scope="module")
def outside_address() -> Iterator[str]:
    """An IPv4 address of this machine that is not loopback (a dummy interface if need be)."""
    found = _routable_ipv4()
    if found is not None:
        yield found
        return
    name, address = _DUMMY  # needs root, as the test machines run
    for command in (
        ["ip", "link", "add", name, "type", "dummy"],
        ["ip", "addr", "add", f"{address}/32", "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


@contextmanager
def uvicorn(home: Path, host: str, **variables: str) -> Iterator[str]:
    """``uvicorn omops.server.app:app_from_environment --factory --host HOST``; its URL."""
    port = free_port(host)
    command = [
        sys.executable, "-m", "uvicorn", "omops.server.app:app_from_environment", "--factory",
        "--host", host, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    log = home / f"uvicorn-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=om_env(home, **variables), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_keyless_app_refuses_a_client_from_outside(home: Path, outside_address: str) -> None:
    with uvicorn(home, outside_address) as url:
        for path in ("/api/v1/model", "/api/v1/dataset/stats", "/health", "/metrics"):
            response = httpx.get(f"{url}{path}", timeout=60)
            assert_error(
                response, 403, "loopback clients only", outside_address, "OMOPS_SERVER_INSECURE"
            )
        response = httpx.post(
            f"{url}/api/v1/model/forecast/predict", json={"data": {"x": [1.0]}}, timeout=60
        )
        assert_error(response, 403, "loopback clients only")


def test_an_insecure_app_answers_a_client_from_outside(home: Path, outside_address: str) -> None:
    with uvicorn(home, outside_address, OMOPS_SERVER_INSECURE="1") as url:
        models = httpx.get(f"{url}/api/v1/model", timeout=60).json()["models"]
        assert [m["name"] for m in models] == ["forecast"]


def test_an_app_over_a_catalog_with_keys_requires_them(home: Path, outside_address: str) -> None:
    om = Omega(home=str(home))
    token, _ = om.catalog.api_keys.create(role="read", buckets=["default"])
    om.catalog.close()
    with uvicorn(home, outside_address) as url:
        assert_error(httpx.get(f"{url}/api/v1/model", timeout=60), 401, "needs an API key")
        answer = httpx.get(
            f"{url}/api/v1/model", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        # keys do not relax the rest: a web page still may not write
        predict = httpx.post(
            f"{url}/api/v1/model/forecast/predict",
            timeout=60,
            json={"data": {"x": [1.0]}},
            headers={"Authorization": f"Bearer {token}", "Origin": "https://attacker.example"},
        )
        assert_error(predict, 403, "Origin")
