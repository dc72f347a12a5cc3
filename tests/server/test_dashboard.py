"""The dashboard's pages and their security, in-process (omops/server/ui).

The pages follow the API's rules: the keyless server answers loopback
clients and Host names only; with keys, a browser logs in by entering one and
gets a signed HttpOnly, SameSite=Strict session cookie; a write riding that
cookie needs the page's CSRF token; a read key reads and cannot change; a key
sees only its buckets. tests/browser drives the same pages in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from omops.omega import Omega
from omops.server import create_app

from .support import LOCAL, X_SPLIT, assert_error, local_client

PAGES = [
    "/ui",
    "/ui/datasets",
    "/ui/datasets/stats",
    "/ui/models",
    "/ui/models/forecast",
    "/ui/experiments",
    "/ui/production",
    "/ui/jobs",
    "/ui/scripts",
    "/ui/tasks",
]
_URL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_LOGIN_CSRF = re.compile(r'<meta name="login-csrf" content="([^"]*)">')


@pytest.fixture
def keyed(store: Omega) -> Iterator[TestClient]:
    with TestClient(create_app(store, require_keys=True), base_url="http://127.0.0.1") as client:
        yield client


def _token(store: Omega, role: str, buckets: list[str] | None = None) -> str:
    return store.catalog.api_keys.create(role=role, buckets=buckets or ["default"])[0]


def _log_in(client: TestClient, token: str) -> str:
    """Log in as a browser does; returns the CSRF token of the pages."""
    page = client.get("/ui/login")
    assert page.status_code == 200
    login_csrf = _LOGIN_CSRF.search(page.text)[1]
    response = client.post("/ui/login", json={"key": token}, headers={"X-CSRF-Token": login_csrf})
    assert response.status_code == 200, response.text
    return _CSRF.search(client.get("/ui").text)[1]


# -- the keyless server ---------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_without_anything_from_elsewhere(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert not _URL.search(response.text), _URL.search(response.text)
    assert "<script>" not in response.text  # no inline script: the CSP would block it


def test_root_leads_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_come_from_the_package(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert not re.search(r"https?://", response.text), response.text
    assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', response.text)
    assert assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "connect-src 'self'" in response.headers["content-security-policy"]


def test_vendored_files_ship_with_their_licences() -> None:
    vendor = resources.files("omops.server.ui") / "static" / "vendor"
    for package in ("uplot", "swagger-ui", "redoc"):
        assert (vendor / package / "LICENSE").is_file(), package
    bundle = (vendor / "redoc" / "redoc.standalone.js").read_text()
    assert "cdn.redoc.ly" not in bundle  # its logo was the one thing it loaded from a CDN


def test_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui") or p in ("/", "/docs", "/redoc")]


def test_keyless_pages_keep_the_loopback_rules(store: Omega) -> None:
    app = create_app(store)
    with TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000)) as remote:
        assert_error(remote.get("/ui"), 403, "loopback clients only")
    with TestClient(app, base_url="http://attacker.example", client=LOCAL["client"]) as rebound:
        assert_error(rebound.get("/ui/datasets"), 421, "does not answer to Host")
    with local_client(app) as local:
        assert local.get("/ui").status_code == 200
        assert local.get("/ui/login", follow_redirects=False).headers["location"] == "/ui"
        assert_error(local.post("/ui/login", json={"key": "x"}), 400, "needs no API key")
        foreign = {"Origin": "https://attacker.example"}
        assert_error(local.delete("/api/v1/dataset/stats", headers=foreign), 403, "Origin")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert_error(local.post("/ui/logout", content=b"a=1", headers=form), 415)


# -- logging in ---------------------------------------------------------------


def test_pages_send_a_browser_without_a_session_to_log_in(keyed: TestClient) -> None:
    response = keyed.get("/ui/datasets/stats?where=x%3D1", follow_redirects=False)
    assert response.status_code == 303
    assert (
        response.headers["location"] == "/ui/login?next=%2Fui%2Fdatasets%2Fstats%3Fwhere%3Dx%253D1"
    )
    for open_path in ("/ui/login", "/ui/static/app.css", "/docs", "/redoc", "/health"):
        assert keyed.get(open_path).status_code == 200, open_path
    assert_error(keyed.get("/api/v1/dataset"), 401)


def test_log_in_sets_a_signed_httponly_strict_cookie_without_the_key(
    keyed: TestClient, store: Omega
) -> None:
    token = _token(store, "read")
    page = keyed.get("/ui/login")
    login_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
    csrf = _LOGIN_CSRF.search(page.text)[1]
    response = keyed.post("/ui/login", json={"key": token}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    cookie = next(c for c in response.headers.get_list("set-cookie") if "omops_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert token.split("_")[2] not in cookie  # the secret part of the key is nowhere in it
    home = keyed.get("/ui")
    assert home.status_code == 200 and "(read)" in home.text
    assert keyed.get("/api/v1/dataset/stats").status_code == 200  # the API takes the session too


def test_log_in_needs_the_forms_token_and_a_valid_key(keyed: TestClient, store: Omega) -> None:
    token = _token(store, "read")
    csrf = _LOGIN_CSRF.search(keyed.get("/ui/login").text)[1]
    assert_error(keyed.post("/ui/login", json={"key": token}), 403, "X-CSRF-Token")
    wrong = {"X-CSRF-Token": csrf + "x"}
    assert_error(keyed.post("/ui/login", json={"key": token}, headers=wrong), 403)
    right = {"X-CSRF-Token": csrf}
    assert_error(keyed.post("/ui/login", json={"key": "omk_a_b"}, headers=right), 401, "unknown")
    assert_error(keyed.post("/ui/login", json={"nokey": 1}, headers=right), 400, '{"key"')
    assert "omops_session" not in keyed.cookies


def test_after_log_in_only_dashboard_paths_are_followed(keyed: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example", "/api/v1/model", "/ui\\@evil"):
        page = keyed.get("/ui/login", params={"next": target})
        assert 'data-next="/ui"' in page.text, target
    page = keyed.get("/ui/login", params={"next": "/ui/models?page=2"})
    assert 'data-next="/ui/models?page=2"' in page.text


# -- what a session may do ------------------------------------------------------


def test_a_session_write_needs_the_pages_csrf_token(keyed: TestClient, store: Omega) -> None:
    csrf = _log_in(keyed, _token(store, "write"))
    assert_error(keyed.delete("/api/v1/dataset/stats"), 403, "X-CSRF-Token")
    forged = {"X-CSRF-Token": "0" * len(csrf)}
    assert_error(keyed.delete("/api/v1/dataset/stats", headers=forged), 403, "X-CSRF-Token")
    assert store.datasets.exists("stats")
    model = "/api/v1/model/forecast/predict"
    assert_error(keyed.post(model, json=X_SPLIT), 403, "X-CSRF-Token")  # a POST, so: a token
    assert keyed.post(model, json=X_SPLIT, headers={"X-CSRF-Token": csrf}).status_code == 200
    answer = keyed.delete("/api/v1/dataset/stats", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200 and not store.datasets.exists("stats")


def test_a_read_key_reads_and_cannot_change(keyed: TestClient, store: Omega) -> None:
    csrf = _log_in(keyed, _token(store, "read"))
    page = keyed.get("/ui/datasets/stats")
    assert page.status_code == 200 and "Delete this dataset" not in page.text
    assert "Run now" not in keyed.get("/ui/jobs").text
    headers = {"X-CSRF-Token": csrf}
    assert_error(keyed.delete("/api/v1/dataset/stats", headers=headers), 403, "may not write")
    assert_error(keyed.put("/api/v1/dataset/new", json=[{"a": 1}], headers=headers), 403)
    assert store.datasets.exists("stats") and not store.datasets.exists("new")


def test_a_write_key_gets_the_controls(keyed: TestClient, store: Omega) -> None:
    _log_in(keyed, _token(store, "write"))
    assert "Delete this dataset" in keyed.get("/ui/datasets/stats").text


def test_a_key_sees_only_its_buckets(keyed: TestClient, store: Omega) -> None:
    store["other"].datasets.put(pd.DataFrame({"a": [1]}), "elsewhere")
    store["third"].datasets.put(pd.DataFrame({"a": [1]}), "hidden-from-key")
    _log_in(keyed, _token(store, "read", ["default", "other"]))
    home = keyed.get("/ui").text
    assert ">other<" in home and ">default<" in home and "third" not in home
    assert "elsewhere" in keyed.get("/ui/datasets?bucket=other").text
    refused = keyed.get("/ui/datasets?bucket=third")
    assert refused.status_code == 403 and "may not read in bucket &#39;third&#39;" in refused.text
    assert keyed.get("/ui/datasets?bucket=..").status_code == 400


def test_revoking_the_key_ends_its_sessions(keyed: TestClient, store: Omega) -> None:
    token = _token(store, "read")
    _log_in(keyed, token)
    key_id = token.split("_")[1]
    admin = {"Authorization": f"Bearer {_token(store, 'admin', ['*'])}"}
    assert keyed.delete(f"/api/v1/auth/key/{key_id}", headers=admin).status_code == 200
    assert keyed.get("/ui", follow_redirects=False).status_code == 303
    assert_error(keyed.get("/api/v1/dataset"), 401, "revoked")


def test_a_changed_cookie_is_no_session(keyed: TestClient, store: Omega) -> None:
    _log_in(keyed, _token(store, "read"))
    value = keyed.cookies["omops_session"]
    other = _token(store, "admin", ["*"]).split("_")[1]
    keyed.cookies.delete("omops_session")
    keyed.cookies.set("omops_session", value.replace(value.split(".")[1], other))
    assert keyed.get("/ui", follow_redirects=False).status_code == 303
    assert_error(keyed.get("/api/v1/auth/key"), 401, "not valid")


def test_log_out_needs_the_token_and_ends_the_session(keyed: TestClient, store: Omega) -> None:
    csrf = _log_in(keyed, _token(store, "read"))
    assert_error(keyed.post("/ui/logout"), 403, "X-CSRF-Token")
    response = keyed.post("/ui/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert 'omops_session=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert keyed.get("/ui", follow_redirects=False).status_code == 303


# -- what pages show ------------------------------------------------------------


def test_lists_page_through_the_store(client: TestClient, store: Omega) -> None:
    for i in range(120):
        store.datasets.put({"i": i}, f"many/{i:03d}")
    first = client.get("/ui/datasets", params={"prefix": "many/"}).text
    assert first.count('href="/ui/datasets/many/') == 50
    assert "many/000" in first and "many/050" not in first
    assert "page 1 of 3 (120 in all)" in first
    last = client.get("/ui/datasets", params={"prefix": "many/", "page": 3}).text
    assert last.count('href="/ui/datasets/many/') == 20 and "many/119" in last
    beyond = client.get("/ui/datasets", params={"prefix": "many/", "page": 99}).text
    assert "page 3 of 3" in beyond


def test_a_run_pages_through_its_events(client: TestClient, store: Omega) -> None:
    with store.runtime.experiment("big") as exp:
        exp.log_events(("metric", "loss", float(i), i) for i in range(250))
    first = client.get("/ui/experiments/big", params={"run": 1}).text
    after = re.search(r"after=(\d+)", first)[1]
    assert first.count("<td>metric</td>") == 98  # start and system came first
    second = client.get("/ui/experiments/big", params={"run": 1, "after": after}).text
    assert second.count("<td>metric</td>") == 100
    assert '<td class="num">98</td>' in second and '<td class="num">97</td>' not in second


def test_dataset_filters_and_downloads(client: TestClient) -> None:
    page = client.get("/ui/datasets/stats", params={"where": "sales__gte=150 & region=US"}).text
    assert "3 matching rows" in page  # sales 150, 170, 190
    csv = client.get("/ui/download/stats", params={"where": "x__lt=2", "format": "csv"})
    assert csv.headers["content-disposition"] == 'attachment; filename="stats.csv"'
    assert csv.text.splitlines() == ["x,sales,y,region", "0.0,0,0,EU", "1.0,10,0,US"]
    parquet = client.get("/ui/download/stats", params={"columns": "sales", "format": "parquet"})
    frame = pd.read_parquet(__import__("io").BytesIO(parquet.content))
    assert list(frame.columns) == ["sales"] and len(frame) == 20
    bad = client.get("/ui/datasets/stats", params={"where": "sales >= 3"})
    assert bad.status_code == 200 and "cannot read the filter" in bad.text
    unknown = client.get("/ui/datasets/stats", params={"where": "nope=1"})
    assert "nope" in unknown.text and 'class="error"' in unknown.text


def test_errors_are_html_pages(client: TestClient) -> None:
    missing = client.get("/ui/models/nope")
    assert missing.status_code == 404 and "does not exist" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert client.get("/ui/datasets/a/../b").status_code in (400, 404)
    assert client.get("/ui/download/stats", params={"format": "xlsx"}).status_code == 422


def test_model_form_comes_from_its_input_columns(client: TestClient, store: Omega) -> None:
    page = client.get("/ui/models/forecast").text
    assert 'data-column="x"' in page and "<option>predict_proba</option>" in page
    from sklearn.linear_model import LinearRegression

    store.models.put(LinearRegression().fit(np.ones((3, 2)), [1, 2, 3]), "unnamed")
    unnamed = client.get("/ui/models/unnamed").text
    assert 'data-column="0"' in unnamed and 'data-column="1"' in unnamed


def test_executed_notebooks_are_sandboxed(client: TestClient, store: Omega) -> None:
    store.jobs.create("print('<script>alert(1)</script>')", "nb")
    response = client.get("/ui/notebook/nb")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert "<script" not in response.text.replace("&lt;script", "")
    page = client.get("/ui/jobs/nb").text
    assert 'sandbox src="/ui/notebook/nb"' in page


def test_every_page_renders_on_each_catalog(om: Omega) -> None:
    from .support import prepare

    prepare(om)
    with om.runtime.experiment("exp") as exp:
        exp.log_param("C", 1.0)
        exp.log_events(("metric", "loss", float(i), i) for i in range(300))
    om.runtime.experiment("prod").track("forecast")
    om.jobs.create("print(1)", "job")
    with local_client(create_app(om)) as client:
        for path in [
            *PAGES,
            "/ui/experiments/exp",
            "/ui/experiments/exp?run=1",
            "/ui/experiments/exp?compare=1&compare=1",
            "/ui/production/forecast",
            "/ui/jobs/job",
        ]:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[-500:])
        assert '"loss":{"1":{"x":[0,1,2,' in client.get("/ui/experiments/exp").text


def test_a_dataset_that_is_read_elsewhere_is_not_read_by_its_page(
    client: TestClient, store: Omega
) -> None:
    store.datasets.put(np.arange(3), "array")
    assert "[\n  0,\n  1,\n  2\n]" in client.get("/ui/datasets/array").text
    store.datasets.put("https://example.invalid/data.csv", "remote", kind="url.dataset")
    page = client.get("/ui/datasets/remote")
    assert page.status_code == 200 and "No preview of a url.dataset" in page.text
