"""A real browser against real servers: Debian's Chromium, driven by Playwright.

One Chromium for the browser tests (headless, no sandbox, no GPU, no background
networking, a fresh profile; Playwright never downloads a browser of its own:
``executable_path`` is the system's). Each test gets a new browser context
(its own cookies) and a page whose every request is recorded: a test fails if
any request went elsewhere than the server on loopback (see
:func:`assert_loopback_only`). Screenshots go to ``tests/artifacts/browser``
(``OMOPS_BROWSER_ARTIFACTS`` to change it; gitignored).

Servers: ``om runtime serve`` subprocesses on free loopback ports, one keyless
and one requiring keys, over a home prepared once per session with datasets,
a model, experiments with runs, a tracked model, a job run and tasks.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from server.support import Server, classifier, copy_home, stats_frame

from omops.omega import Omega

CHROMIUM = os.environ.get("OMOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]
ARTIFACTS = Path(
    os.environ.get("OMOPS_BROWSER_ARTIFACTS", Path(__file__).parents[1] / "artifacts" / "browser")
)
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
#: Schemes a page may use without the network.
_LOCAL_SCHEMES = ("data", "blob", "about")


def _prepare(om: Omega) -> None:
    """What the pages show: datasets, a model, experiments, a tracked model, a job run, tasks."""
    om.datasets.put(stats_frame(), "stats", append=False)
    om.datasets.put(stats_frame().head(5), "stats", append=True, tag="v2")
    for i in range(3):
        om.datasets.put(pd.DataFrame({"i": np.arange(10) * i}), f"daily/part-{i}")
    om.datasets.put({"threshold": 0.5, "owner": "team"}, "settings")
    om.models.put(classifier(), "forecast", tag="v1")
    meta = om.models.metadata("forecast")
    meta.attributes.update({"owner": "data team", "trained_on": "stats"})
    meta.save()
    for c, rate in ((1.0, 0.10), (0.1, 0.05)):
        with om.runtime.experiment("training") as exp:
            exp.log_param("C", c)
            exp.log_param("solver", "lbfgs")
            for step in range(10):
                exp.log_metric("loss", float(np.exp(-rate * step * (1 + c))), step=step)
                exp.log_metric("accuracy", float(1 - np.exp(-rate * step * 2)), step=step)
            exp.log_artifact(stats_frame().head(3), "sample")
    with om.runtime.experiment("profiled", provider="profiling", interval=0.05) as exp:
        exp.log_metric("rows", 1000)
        time.sleep(0.4)  # a few CPU and memory samples
    production = om.runtime.experiment("production")
    production.track("forecast", reference="stats")  # drift of its input x
    model = om.runtime.model("forecast")
    for x in (1.0, 5.0, 12.0, 18.0):
        model.predict(pd.DataFrame({"x": [x]})).get()
    om.jobs.create(
        "import numpy as np\nn = 3\nprint('squares', [i * i for i in range(n)])", "report"
    )
    om.runtime.job("report").run().get()
    om.jobs.schedule("report", "every day at 06:00")
    started = [
        om.runtime.submit_model_action("forecast", "predict", "stats[x]"),
        om.runtime.submit_model_action("forecast", "predict", "stats[region]"),  # fails
    ]
    deadline = time.monotonic() + 60
    while any(om.catalog.task_log.get(t).status not in ("SUCCESS", "FAILURE") for t in started):
        assert time.monotonic() < deadline, "the prepared tasks did not finish"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def dashboard_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("dashboard-template")
    om = Omega(home=str(home))
    _prepare(om)
    om.close()
    return home


@pytest.fixture(scope="session")
def keyless(dashboard_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: loopback, no keys."""
    home = copy_home(dashboard_template, tmp_path_factory.mktemp("keyless") / "home")
    with Server(home) as server:
        yield server


@pytest.fixture(scope="session")
def compat_server(
    dashboard_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A keyless server answering omega-ml's clients (``--compat omegaml``)."""
    home = copy_home(dashboard_template, tmp_path_factory.mktemp("compat") / "home")
    with Server(home, "--compat", "omegaml") as server:
        yield server


@pytest.fixture(scope="session")
def keyed(
    dashboard_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server requiring keys, and tokens of a read, a write and another bucket's key."""
    home = copy_home(dashboard_template, tmp_path_factory.mktemp("keyed") / "home")
    om = Omega(home=str(home))
    tokens = {
        "read": om.catalog.api_keys.create(role="read", buckets=["default"], note="viewer")[0],
        "write": om.catalog.api_keys.create(role="write", buckets=["default"], note="editor")[0],
        "other": om.catalog.api_keys.create(role="admin", buckets=["other"], note="other")[0],
    }
    om.close()
    with Server(home, "--require-keys") as server:
        yield server, tokens


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the tests of this folder.

    Package-scoped, not session-scoped: Playwright's sync API runs an event
    loop in this thread while it is open, and tests elsewhere that call
    ``asyncio.run`` must find none.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium; "
            "scripts/test.sh does) or set OMOPS_CHROMIUM"
        )
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A browser page with its network log, console errors, screenshots and axe."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        #: Patterns of answers >= 400 a test expects (a refused write, a missing endpoint).
        self.expected_failures: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on(
            "response",
            lambda response: (
                self.failed.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text)
                # an answer >= 400 is also logged as an error: those are checked by URL
                if message.type == "error"
                and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")
        return response

    def shot(self, name: str) -> Path:
        target = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical WCAG 2.1 A/AA violations axe-core finds on the page."""
        self.page.evaluate(AXE.read_text())  # through the DevTools protocol: CSP stays on
        result = self.page.evaluate(
            "() => axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
        )
        return [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]}
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]


def assert_loopback_only(requests: list[str]) -> None:
    """Every request the page made went to loopback (or needed no network at all)."""
    assert requests, "the page made no request at all"
    foreign = [
        url
        for url in requests
        if urlsplit(url).scheme not in _LOCAL_SCHEMES
        and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
    ]
    assert not foreign, f"requests left loopback: {foreign}"


def _tab(browser: Any, base: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    tab = Tab(page, base)
    yield tab
    context.close()
    assert_loopback_only(tab.requests)
    assert not tab.console_errors, tab.console_errors
    unexpected = [
        failed
        for failed in tab.failed
        if not any(re.search(pattern, failed) for pattern in tab.expected_failures)
    ]
    assert not unexpected, f"answers >= 400 the test did not expect: {unexpected}"


@pytest.fixture
def tab(browser: Any, keyless: Server) -> Iterator[Tab]:
    """A fresh page (own cookies) on the keyless server."""
    yield from _tab(browser, keyless.url)


@pytest.fixture
def compat_tab(browser: Any, compat_server: Server) -> Iterator[Tab]:
    """A fresh page on the server started with ``--compat omegaml``."""
    yield from _tab(browser, compat_server.url)


@pytest.fixture
def keyed_tab(browser: Any, keyed: tuple[Server, dict[str, str]]) -> Iterator[Tab]:
    """A fresh page (own cookies) on the server that requires keys."""
    yield from _tab(browser, keyed[0].url)
