"""The dashboard in Chromium: every page, filters, run comparison, the model form, keys.

Each test runs in a fresh browser context; the ``tab`` fixtures fail a test
whose page logged a JavaScript error or sent any request off loopback.
Screenshots land in tests/artifacts/browser (docs/img has the README's copies).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from server.support import Server

from .conftest import Tab

pytestmark = pytest.mark.browser

#: (path, screenshot name, text the page must show) of each main page.
PAGES = [
    ("/ui", "buckets", "Buckets"),
    ("/ui/datasets", "datasets", "daily/part-0"),
    ("/ui/datasets/stats?where=sales__gte%3D100+%26+region%3DEU", "dataset", "matching rows"),
    ("/ui/models", "models", "forecast"),
    ("/ui/models/forecast", "model", "Try it"),
    ("/ui/experiments", "experiments", "training"),
    ("/ui/experiments/training", "experiment", "Runs, newest first"),
    ("/ui/experiments/training?run=1", "run", "Artifacts"),
    ("/ui/experiments/profiled?run=1", "profile", "Profiling samples"),
    ("/ui/production", "production", "forecast"),
    ("/ui/production/forecast", "monitor", "in production"),
    ("/ui/jobs", "jobs", "every day at 06:00"),
    ("/ui/jobs/report", "job", "results/report_"),
    ("/ui/scripts", "scripts", "Scripts"),
    ("/ui/tasks", "tasks", "FAILURE"),
]


def test_every_page_loads_is_accessible_and_stays_on_loopback(tab: Tab) -> None:
    for path, name, text in PAGES:
        response = tab.goto(path)
        assert response.status == 200, (path, response.status)
        assert text in tab.page.inner_text("main"), path
        assert tab.page.locator("h1").count() == 1, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert tab.axe() == [], path
        for figure in tab.page.locator("figure.chart[data-chart]").all():  # every chart drew
            assert int(figure.get_attribute("data-rendered") or 0) >= 1, (path, figure)
        tab.shot(name)


def test_navigation_links_reach_every_section(tab: Tab) -> None:
    tab.goto("/")
    assert tab.page.url.endswith("/ui")
    for label, heading in [
        ("Datasets", "Datasets"),
        ("Models", "Models"),
        ("Experiments", "Experiments"),
        ("Production", "Production"),
        ("Jobs", "Jobs"),
        ("Scripts", "Scripts"),
        ("Tasks", "Tasks"),
        ("Buckets", "Buckets"),
    ]:
        tab.page.get_by_role("navigation", name="Sections").get_by_role(
            "link", name=label, exact=True
        ).click()
        tab.page.wait_for_load_state("networkidle")
        assert tab.page.locator("h1").inner_text() == heading
        assert tab.page.locator('nav a[aria-current="page"]').inner_text() == label
    tab.goto("/ui/datasets")
    tab.page.get_by_role("link", name="stats", exact=True).click()
    tab.page.wait_for_load_state("networkidle")
    assert tab.page.locator("h1").inner_text() == "stats"


def test_filter_a_dataset_and_download_what_matches(tab: Tab) -> None:
    tab.goto("/ui/datasets/stats")
    assert "25 matching rows" in tab.page.inner_text("#matched")  # 20 + 5 appended
    tab.page.fill("#where", "sales__gte=100 & region=EU")
    tab.page.fill("#columns", "x,sales,region")
    tab.page.get_by_role("button", name="Apply").click()
    tab.page.wait_for_load_state("networkidle")
    assert "5 matching rows" in tab.page.inner_text("#matched")
    headers = tab.page.locator("#preview thead th").all_inner_texts()
    assert headers == ["x", "sales", "region"]
    rows = [r.split("\t") for r in tab.page.locator("#preview tbody tr").all_inner_texts()]
    assert [int(r[1]) for r in rows] == [100, 120, 140, 160, 180]
    assert {r[2] for r in rows} == {"EU"}
    with tab.page.expect_download() as download:
        tab.page.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines() == ["x,sales,region"] + [
        f"{v / 10},{v},EU" for v in range(100, 200, 20)
    ]
    tab.expected_failures.append(r"^400 ")
    tab.page.fill("#where", "sales__between=1")
    tab.page.get_by_role("button", name="Apply").click()
    tab.page.wait_for_load_state("networkidle")
    assert "between" in tab.page.locator("p.error").inner_text()


def test_compare_two_runs_side_by_side(tab: Tab) -> None:
    tab.goto("/ui/experiments/training")
    tab.page.check("#cmp-1")
    tab.page.check("#cmp-2")
    tab.page.get_by_role("button", name="Compare selected runs").click()
    tab.page.wait_for_load_state("networkidle")
    assert "compare=1" in tab.page.url and "compare=2" in tab.page.url
    assert tab.page.locator("h2", has_text="Runs 1, 2 side by side").count() == 1
    table = tab.page.locator("#compare")
    assert table.locator("thead th").all_inner_texts() == ["Param or metric", "run 1", "run 2"]
    c_row = table.locator("tr", has=tab.page.locator("th", has_text=re.compile("^C$")))
    assert c_row.locator("td").all_inner_texts() == ["1.0", "0.1"]
    for key in ("loss", "accuracy"):
        figure = tab.page.locator(f'figure[data-key="{key}"]')
        assert figure.get_attribute("data-rendered") == "2"  # one line per run
        assert figure.locator("canvas").count() == 1
        assert figure.locator(".u-legend").inner_text().count("run ") == 2
    assert tab.axe() == []
    tab.shot("compare")


def test_call_a_model_from_its_form(tab: Tab) -> None:
    tab.goto("/ui/models/forecast")
    assert tab.page.get_by_label("x").count() == 1  # the form is built from the input columns
    tab.page.get_by_label("x").fill("18")
    tab.page.get_by_role("button", name="Call the model").click()
    expect(tab.page.locator("#try-result")).to_have_text(re.compile(r"^\[1\]"))
    tab.page.select_option("#action", "predict_proba")
    tab.page.get_by_label("x").fill("1")
    tab.page.get_by_role("button", name="Call the model").click()
    expect(tab.page.locator("#try-result")).to_have_text(re.compile(r"^\[\[0\.9"))
    tab.shot("model")


def test_the_dashboard_works_on_an_omega_ml_compatible_server(
    compat_tab: Tab, compat_server: Server
) -> None:
    """The pages ask for native answers (Omops-Profile: native) whatever the server's profile."""
    tab = compat_tab
    tab.goto("/ui/models/forecast")
    tab.page.get_by_label("x").fill("18")
    tab.page.get_by_role("button", name="Call the model").click()
    expect(tab.page.locator("#try-result")).to_have_text(
        re.compile(r"^\[1\]\n\(revision [0-9a-f]{12}\)")
    )
    tab.goto("/ui/jobs/report")
    tab.page.get_by_role("button", name="Run now").click()
    tab.page.wait_for_selector("#notice:not([hidden])")
    assert re.fullmatch(r"Started: task [0-9a-f]+ \(see Tasks\)\.", tab.page.inner_text("#notice"))
    with httpx.Client(base_url=compat_server.url) as http:  # omega-ml's clients get their shapes
        assert set(http.get("/api/v1/model/forecast").json()) == {"model", "result"}


def test_production_page_shows_monitoring(tab: Tab) -> None:
    tab.goto("/ui/production/forecast")
    expect(tab.page.locator("#monitor-state")).not_to_have_text("Loading…")
    expect(tab.page.locator("#drift-state")).not_to_have_text("Loading…")
    assert "time buckets of 1m in the last 1h" in tab.page.inner_text("#monitor-state")
    assert tab.page.inner_text("#drift-state").startswith(("No drift over", "Drift detected over"))
    charts = {
        name: tab.page.locator(f"#chart-{name}")
        for name in ("predictions", "latency", "errors", "drift")
    }
    for name, count in (("predictions", "1"), ("latency", "3"), ("errors", "1"), ("drift", "1")):
        assert charts[name].get_attribute("data-rendered") == count, name
        # every chart spans the window shown (1h), even the drift chart's single point
        assert abs(int(charts[name].get_attribute("data-span")) - 3600) <= 60, name
    # the tracked minutes are few: their values are drawn as points, not as a line of one
    assert charts["latency"].get_attribute("data-points") == "3"
    assert tab.page.locator("#drift tbody tr").count() >= 1
    tab.shot("monitor")


def test_executed_notebook_is_shown_sandboxed(tab: Tab) -> None:
    tab.goto("/ui/jobs/report")
    result = tab.page.locator("#job-runs tbody a").first.inner_text()
    assert result.startswith("results/report_")
    tab.page.locator("#job-runs tbody a").first.click()
    tab.page.wait_for_load_state("networkidle")
    frame = tab.page.frame_locator("iframe.notebook")
    assert "squares [0, 1, 4]" in frame.locator("body").inner_text()
    assert tab.page.locator("iframe.notebook").get_attribute("sandbox") == ""
    tab.shot("notebook")


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".swagger-ui .info"), ("/redoc", "h1")])
def test_api_docs_render_offline(tab: Tab, path: str, ready: str) -> None:
    response = tab.goto(path)
    assert response.status == 200
    tab.page.wait_for_selector(ready, timeout=20_000)
    assert "omops" in tab.page.inner_text("body")
    assert "/api/v1/model" in tab.page.content() or "model" in tab.page.inner_text("body")
    tab.shot(path.strip("/"))


def _log_in(tab: Tab, token: str) -> None:
    tab.goto("/ui/datasets/stats")
    assert "/ui/login" in tab.page.url  # no session yet: the page sends the browser to log in
    tab.page.fill("#key", token)
    tab.page.get_by_role("button", name="Log in").click()
    tab.page.wait_for_url(re.compile(r".*/ui/datasets/stats$"))
    tab.page.wait_for_load_state("networkidle")


def _cookies(tab: Tab) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in tab.page.context.cookies()}


def test_log_in_with_a_key_and_out(keyed_tab: Tab, keyed: tuple[Server, dict[str, str]]) -> None:
    tab, tokens = keyed_tab, keyed[1]
    tab.goto("/ui/login")
    assert tab.axe() == []
    tab.shot("login")
    tab.expected_failures.append(r"^401 .*/ui/login$")
    tab.page.fill("#key", "omk_nope_wrong")
    tab.page.get_by_role("button", name="Log in").click()
    tab.page.wait_for_selector("#login-error:not([hidden])")
    assert "401" in tab.page.inner_text("#login-error")
    _log_in(tab, tokens["write"])
    session = _cookies(tab)["omops_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert tokens["write"] not in session["value"]
    assert all(tokens["write"] not in url for url in tab.requests)  # never in a URL
    assert "(write)" in tab.page.inner_text("header")
    tab.page.get_by_role("button", name="Log out").click()
    tab.page.wait_for_url(re.compile(r".*/ui/login.*"))
    assert "omops_session" not in _cookies(tab)
    tab.goto("/ui/models")
    assert "/ui/login" in tab.page.url


def test_a_read_key_sees_but_is_refused_a_write(
    keyed_tab: Tab, keyed: tuple[Server, dict[str, str]]
) -> None:
    tab, (server, tokens) = keyed_tab, keyed
    tab.expected_failures += [
        r"^403 .*/api/v1/dataset/stats$",
        r"^403 .*/ui/datasets\?bucket=other$",
    ]
    _log_in(tab, tokens["read"])
    assert "matching rows" in tab.page.inner_text("main")  # it sees
    assert tab.page.locator('[data-action="delete-dataset"]').count() == 0  # no write controls
    answer = tab.page.evaluate(
        """async () => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/api/v1/dataset/stats', {method: 'DELETE',
                headers: {'X-CSRF-Token': token}, credentials: 'same-origin'});
            return {status: r.status, body: await r.json()};
        }"""
    )
    assert answer["status"] == 403 and "may not write" in answer["body"]["message"]
    tab.goto("/ui/models/forecast")
    tab.page.get_by_label("x").fill("18")
    tab.page.get_by_role("button", name="Call the model").click()  # predicting is reading
    expect(tab.page.locator("#try-result")).to_have_text(re.compile(r"^\[1\]"))
    with httpx.Client(base_url=server.url) as http:  # still there
        auth = {"Authorization": f"Bearer {tokens['read']}"}
        assert http.get("/api/v1/dataset/stats", headers=auth).status_code == 200
    response = tab.goto("/ui/datasets?bucket=other")
    assert response.status == 403
    assert "may not read" in tab.page.inner_text("main")


def test_a_write_key_deletes_through_the_page_with_its_csrf_token(
    keyed_tab: Tab, keyed: tuple[Server, dict[str, str]]
) -> None:
    tab, (server, tokens) = keyed_tab, keyed
    tab.goto("/ui/login")
    tab.page.fill("#key", tokens["write"])
    tab.page.get_by_role("button", name="Log in").click()
    tab.page.wait_for_url(re.compile(r".*/ui$"))
    tab.goto("/ui/datasets/daily/part-2")
    tab.expected_failures.append(r"^403 .*/api/v1/dataset/daily/part-2$")
    forged = tab.page.evaluate(
        """async () => (await fetch('/api/v1/dataset/daily/part-2',
            {method: 'DELETE', credentials: 'same-origin'})).status"""
    )
    assert forged == 403  # the session without the page's token changes nothing
    tab.page.get_by_role("button", name="Delete this dataset").click()
    tab.page.wait_for_selector("#notice:not([hidden])")
    assert tab.page.inner_text("#notice") == "Deleted daily/part-2."
    with httpx.Client(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {tokens['write']}"}
        assert http.get("/api/v1/dataset/daily/part-2", headers=auth).status_code == 404
