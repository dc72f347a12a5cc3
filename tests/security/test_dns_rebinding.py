"""DNS rebinding: a page whose name resolves to 127.0.0.1 must not read the keyless server.

The browser then sends the page's own name as ``Host``
(``attacker.example:8000``), which used to be answered 200 with the data. The
keyless loopback server answers only Host names of loopback and configured
ones; the rest get 421 before any route runs.
"""

from __future__ import annotations

import pytest
from server.support import X_SPLIT, Server, assert_error

PREDICT = "/api/v1/model/forecast/predict"


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:8000",
        "attacker.example",
        "localhost.attacker.example",
        "127.0.0.1.nip.io:8000",
        "192.0.2.2:8000",
        "[fd00::2]:8000",
        "0.0.0.0:8000",
    ],
)
def test_a_foreign_host_is_421(keyless: Server, host: str) -> None:
    with keyless.client(Host=host) as http:
        for response in (
            http.get("/api/v1/dataset/stats"),
            http.get("/api/v1/model"),
            http.get("/metrics"),
            http.post(PREDICT, json=X_SPLIT),
        ):
            assert_error(response, 421, "misdirected_request", repr(host), "--allowed-host")


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:1", "127.1.2.3:80", "[::1]:8000"],
)
def test_loopback_hosts_pass(keyless: Server, host: str) -> None:
    with keyless.client(Host=host) as http:
        assert http.get("/api/v1/dataset/stats", params={"limit": "1"}).status_code == 200
        assert http.post(PREDICT, json=X_SPLIT).json()["result"] == [0, 1]


def test_configured_host_names_pass(home) -> None:
    with Server(
        home, "--allowed-host", "models.internal", OMOPS_SERVER_ALLOWED_HOSTS="other.lan"
    ) as server:
        for host in ("models.internal", "Models.Internal:8000", "other.lan:1234", "localhost"):
            with server.client(Host=host) as http:
                assert http.get("/api/v1/model").status_code == 200, host
        with server.client(Host="attacker.example") as http:
            assert_error(http.get("/api/v1/model"), 421, "models.internal, other.lan")


def test_a_bad_allowed_host_stops_serve(home) -> None:
    from server.support import run_om

    done = run_om(home, "runtime", "serve", "--allowed-host", "http://x/")
    assert done.returncode == 1 and "not a host name" in done.stderr, done.stderr
    done = run_om(home, "runtime", "serve", "--cors-origin", "*")
    assert done.returncode == 1 and "wildcard is not accepted" in done.stderr, done.stderr


def test_a_server_with_keys_or_insecure_does_not_check_host(home) -> None:
    """Rebinding cannot bring a key; --insecure answers everyone by choice (and says so)."""
    with Server(home, "--insecure") as server:
        assert "--insecure: anyone who reaches" in server.output()
        with server.client(Host="attacker.example:8000") as http:
            assert http.get("/api/v1/model").status_code == 200
            # a page of the Host's own origin may write (what --insecure means), but no other
            response = http.post(
                PREDICT, json=X_SPLIT, headers={"Origin": "http://attacker.example:8000"}
            )
            assert response.status_code == 200
            response = http.post(
                PREDICT, json=X_SPLIT, headers={"Origin": "https://elsewhere.example"}
            )
            assert_error(response, 403, "forbidden")
