"""IPv6 loopback: ``om runtime serve --host ::1`` (or ``[::1]``) binds and answers.

``--host "[::1]"`` used to pass the loopback check and then fail to bind.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from server.support import X_SPLIT, Server, assert_error


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_serve_on_ipv6_loopback(home: Path, host: str) -> None:
    with Server(home, host=host) as server:
        assert server.url.startswith("http://[::1]:")
        assert f"on http://[::1]:{server.port}" in server.output()
        assert "no API keys" in server.output()
        with server.client() as http:
            assert http.get("/health").json()["status"] == "ok"
            assert http.post("/api/v1/model/forecast/predict", json=X_SPLIT).json()["result"] == [
                0,
                1,
            ]
            assert http.get("/api/v1/dataset/stats", params={"limit": "2"}).status_code == 200
            # the client is ::1 and the Host [::1]:port: both loopback
            assert (
                http.post(
                    "/api/v1/model/forecast/predict", json=X_SPLIT, headers={"Origin": server.url}
                ).status_code
                == 200
            )
            assert_error(http.get("/api/v1/model", headers={"Host": "[fd00::2]:80"}), 421)
        with pytest.raises(httpx.TransportError):  # bound to IPv6 loopback only
            httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=1.0)
