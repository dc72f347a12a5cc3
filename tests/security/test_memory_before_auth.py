"""Nothing is built per bucket or per key before the key is checked; every cache is bounded.

Each distinct ``Omops-Bucket`` used to cache an Omega before the key was
checked: 30,000 unauthenticated requests grew the server by ~20 MB for good.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from server.support import Server, local_client

from omops.errors import Unauthorized
from omops.omega import Omega
from omops.server import create_app
from omops.server._auth import BUCKET_CACHE_SIZE, KEY_CACHE_SECONDS, KEY_CACHE_SIZE, Access
from omops.server._metrics import Metrics

REQUESTS = 5_000
MAX_GROWTH = 10 * 1024 * 1024


def cache_sizes(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics").text
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'omops_server_cache_entries\{cache="(\w+)"\} (\S+)', text)
    }


def bad_keys(http: httpx.Client, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        token = f"omk_{secrets.token_hex(6)}_{secrets.token_urlsafe(16)}"
        response = http.get(
            "/api/v1/model",
            headers={"Authorization": f"Bearer {token}", "Omops-Bucket": f"bucket-{i:06d}"},
        )
        assert response.status_code == 401, response.text


@pytest.mark.slow
def test_5000_bad_keys_with_distinct_buckets_leave_no_trace(home: Path) -> None:
    om = Omega(home=str(home))
    token, _ = om.catalog.api_keys.create(role="read", buckets=["default"])
    om.catalog.close()
    with Server(home, "--require-keys") as server:
        process = psutil.Process(server.proc.pid)
        with server.client() as anonymous, server.client(Authorization=f"Bearer {token}") as keyed:
            bad_keys(anonymous, 500, start=REQUESTS)  # warm up: allocator, connections, code paths
            sizes = cache_sizes(keyed)
            before = process.memory_info().rss
            started = time.perf_counter()
            bad_keys(anonymous, REQUESTS)
            seconds = time.perf_counter() - started
            after = process.memory_info().rss
            assert cache_sizes(keyed) == sizes == {"api_keys": 1.0, "sessions": 0.0, "buckets": 0.0}
    growth = after - before
    print(
        f"RSS before {before / 2**20:.1f} MiB, after {REQUESTS} bad-key requests "
        f"{after / 2**20:.1f} MiB (+{growth / 2**20:.2f} MiB) in {seconds:.1f} s"
    )
    assert growth < MAX_GROWTH


def test_the_key_is_checked_before_a_bucket_view_is_made(store_om: Omega) -> None:
    app = create_app(store_om, require_keys=True)
    access: Access = app.state.access
    token, _ = store_om.catalog.api_keys.create(role="read", buckets=["a"])
    with TestClient(app) as client:
        for i in range(300):
            headers = {"X-API-Key": "omk_0_bad", "Omops-Bucket": f"b{i}"}
            assert client.get("/api/v1/model", headers=headers).status_code == 401
            headers = {"X-API-Key": token, "Omops-Bucket": f"b{i}"}
            assert client.get("/api/v1/model", headers=headers).status_code == 403
        assert access.cache_sizes() == {"api_keys": 1, "sessions": 0, "buckets": 0}
        headers = {"X-API-Key": token, "Omops-Bucket": "a"}
        assert client.get("/api/v1/model", headers=headers).status_code == 200
        assert access.cache_sizes() == {"api_keys": 1, "sessions": 0, "buckets": 1}


def test_forged_session_cookies_leave_no_trace(store_om: Omega) -> None:
    app = create_app(store_om, require_keys=True)
    access: Access = app.state.access
    with TestClient(app) as client:
        for i in range(300):
            cookie = f"v1.{i:012x}.9999999999.nonce.mac"  # unknown key ids, a far expiry
            client.cookies.set("omops_session", cookie)
            assert client.get("/api/v1/model").status_code == 401
            assert client.get("/ui", follow_redirects=False).status_code == 303
        assert access.cache_sizes() == {"api_keys": 0, "sessions": 0, "buckets": 0}


def test_the_bucket_views_are_bounded(store_om: Omega) -> None:
    app = create_app(store_om)
    with local_client(app) as client:
        for i in range(BUCKET_CACHE_SIZE + 50):
            assert client.get("/api/v1/model", headers={"Omops-Bucket": f"b{i}"}).status_code == 200
    assert app.state.access.cache_sizes()["buckets"] == BUCKET_CACHE_SIZE


def test_verified_keys_are_an_lru_trusted_for_5_seconds(
    store_om: Omega, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = Access(store_om, require_keys=True, key_cache=3)
    assert KEY_CACHE_SECONDS == 5.0 and KEY_CACHE_SIZE >= 1000
    keys = [store_om.catalog.api_keys.create(role="read", buckets=["a"]) for _ in range(4)]
    tokens = [token for token, _ in keys]
    for i in (0, 1, 2, 0, 3):  # the first used again, so the second is the least recent
        access.key(tokens[i])
    assert access.cache_sizes()["api_keys"] == 3
    for _, key in keys:
        store_om.catalog.api_keys.revoke(key.id)
    assert access.key(tokens[0]).id == keys[0][1].id  # cached: trusted for 5 s
    with pytest.raises(Unauthorized, match="revoked"):
        access.key(tokens[1])  # evicted: the catalog was asked
    monkeypatch.setattr("omops.server._auth.KEY_CACHE_SECONDS", 0.2)
    time.sleep(0.3)
    with pytest.raises(Unauthorized, match="revoked"):
        access.key(tokens[0])  # expired
    access.forget(keys[3][1].id)
    assert access.cache_sizes()["api_keys"] == 1  # tokens[2] only


def test_made_up_methods_do_not_grow_the_metrics() -> None:
    metrics = Metrics()
    for i in range(1000):
        metrics.observe(f"M{i}", "unmatched", 405, 0.001)
    assert len(metrics.requests) == 1
    assert 'method="OTHER",route="unmatched",status="405"} 1000' in metrics.render()
