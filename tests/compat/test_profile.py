"""The omegaml profile in-process: how it is selected, dispatched, and what it answers on errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from server.support import (
    Broken,
    assert_error,
    classifier,
    local_client,
    run_om,
    stats_frame,
)

from omops.errors import ConfigError
from omops.omega import Omega
from omops.server import create_app
from omops.server._auth import Access
from omops.server._guard import GuardPolicy
from omops.server._metrics import Metrics
from omops.server.app import ROUTERS, app_from_environment
from omops.server.compat import PROFILES, _omegaml, check_profile, install_profile
from omops.server.compat._dispatch import PREFIX, replaced_operations
from omops.server.routers import meta, model

PREDICT = "/api/v1/model/forecast/predict"
BODY = {"columns": ["x"], "data": [[1.0], [18.0]]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Omega]:
    om = Omega(home=str(tmp_path / "home"))
    om.datasets.put(stats_frame(), "stats", append=False)
    om.datasets.put([5, 6], "plain", append=False)
    om.models.put(classifier(), "forecast", tag="v1")
    om.models.put(Broken().fit(None, [0, 1]), "broken")
    yield om
    om.close()


@pytest.fixture
def compat(store: Omega) -> Iterator[TestClient]:
    with local_client(create_app(store, compat="omegaml")) as client:
        yield client


def test_profiles_are_checked() -> None:
    assert PROFILES == ("native", "omegaml")
    assert check_profile(None) == check_profile("") == "native"
    assert check_profile(" OmegaML ") == "omegaml"
    with pytest.raises(ConfigError, match="unknown REST profile 'mlflow'"):
        check_profile("mlflow")


def test_the_environment_selects_the_profile(store: Omega, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMOPS_HOME", str(store.settings.home))
    monkeypatch.setenv("OMOPS_SERVER_COMPAT", "omegaml")
    with local_client(app_from_environment()) as client:
        assert client.get("/api/v1/model/forecast").json()["model"] == "forecast"
    monkeypatch.setenv("OMOPS_SERVER_COMPAT", "nope")
    with pytest.raises(ConfigError, match="OMOPS_SERVER_COMPAT"):
        app_from_environment()


def test_serve_refuses_an_unknown_profile(tmp_path: Path) -> None:
    result = run_om(tmp_path, "runtime", "serve", "--compat", "nope")
    assert result.returncode == 1, result.stderr
    assert "unknown REST profile 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_without_the_profile_the_answers_are_native(store: Omega) -> None:
    with (
        local_client(create_app(store)) as plain,
        local_client(create_app(store, compat="native")) as native,
    ):
        for path in ("/api/v1/model/forecast", "/api/v1/dataset/stats?x__gte=18"):
            assert plain.get(path).json() == native.get(path).json()
        assert set(plain.post(PREDICT, json=BODY).json()) == {"model", "revision", "rows", "result"}


def test_omops_profile_native_asks_for_the_native_answer(compat: TestClient) -> None:
    """What the dashboard's pages send: they read native answers from any server."""
    native = {"Omops-Profile": "native"}
    answer = compat.post(PREDICT, json=BODY, headers=native).json()
    assert set(answer) == {"model", "revision", "rows", "result"}
    assert "revisions" in compat.get("/api/v1/model/forecast", headers=native).json()
    assert compat.post("/api/v1/model/forecast/fit", headers=native).status_code == 400
    assert_error(compat.get("/api/v1/model/nope", headers=native), 404)
    assert compat.get("/api/v1/model/nope").status_code == 400


def test_the_dashboard_asks_for_native_answers() -> None:
    from importlib.resources import files

    script = files("omops.server.ui").joinpath("static/app.js").read_text()
    assert '"Omops-Profile": "native"' in script


def test_routes_before_a_catch_all_stay_theirs(store: Omega) -> None:
    """A route another router adds before the model catch-all is not taken by the profile."""
    extra = APIRouter()

    @extra.get("/api/v1/model/{name:path}/drift")
    def drift(name: str) -> dict[str, str]:
        return {"drift": name}

    app = FastAPI()
    app.state.access = Access(store, require_keys=False)
    app.state.metrics, app.state.arrays = Metrics(), True
    app.state.guard = GuardPolicy(require_keys=False, insecure=False)
    routers = (extra, *ROUTERS)
    for router in routers:
        app.include_router(router)
    install_profile(app, "omegaml", routers)
    with local_client(app) as client:
        assert client.get("/api/v1/model/forecast/drift").json() == {"drift": "forecast"}
        assert client.get("/api/v1/model/forecast").json()["model"] == "forecast"


def test_a_handler_without_a_native_route_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="which no native route does"):
        replaced_operations([meta.router, model.router], _omegaml.router, PREFIX)
    assert len(replaced_operations(ROUTERS, _omegaml.router, PREFIX)) == 11


def test_the_docs_show_the_native_operations(compat: TestClient) -> None:
    paths = compat.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(PREFIX)]
    assert "/api/v1/model/{name}/{action}" in paths


# -- answers ------------------------------------------------------------------------


def test_predict_answers_with_the_revision_header(compat: TestClient, store: Omega) -> None:
    answer = compat.put("/api/v1/model/forecast@v1/predict", json=BODY)
    assert answer.json() == {
        "model": "forecast@v1",
        "result": [0, 1],
        "resource_uri": "forecast@v1",
    }
    assert answer.headers["omops-revision"] == store.models.metadata("forecast").revision


def test_a_failed_task_is_a_400_with_its_message(compat: TestClient) -> None:
    started = compat.put("/api/v1/model/broken/predict", json=BODY, headers={"async": "true"})
    assert started.status_code == 202, started.text
    for _ in range(600):
        result = compat.get(started.headers["location"])
        if result.json()["status"] != "PENDING":
            break
    assert result.status_code == 400
    body = result.json()
    assert body["status"] == "FAILURE" and body["response"] is None
    assert "a bug inside the model" in body["message"]
    status = compat.get(f"/api/v1/task/{body['task_id']}/status").json()
    assert status["status"] == "FAILURE" and "a bug inside the model" in status["message"]


def test_an_unknown_task_is_still_404(compat: TestClient) -> None:
    assert_error(compat.get("/api/v1/task/nope/result"), 404, "no task 'nope'")


def test_missing_objects_are_400_but_a_missing_dataset_drop_is_404(compat: TestClient) -> None:
    for response in (
        compat.get("/api/v1/model/nope"),
        compat.get("/api/v1/dataset/nope"),
        compat.get("/api/v1/job/nope"),
        compat.post("/api/v1/script/nope/run"),
    ):
        assert_error(response, 400, "not_found")
    assert_error(compat.delete("/api/v1/dataset/nope"), 404, "not_found")
    assert_error(compat.get("/api/v1/nothing/here"), 404)


def test_parameter_validation_errors_are_400(compat: TestClient, store: Omega) -> None:
    assert_error(compat.get("/api/v1/model", params={"hidden": "maybe"}), 400, "validation_error")
    with local_client(create_app(store)) as native:
        assert native.get("/api/v1/model", params={"hidden": "maybe"}).status_code == 422


def test_get_runs_only_actions_that_keep_the_model(compat: TestClient) -> None:
    refused = compat.get("/api/v1/model/forecast/fit", params={"datax": "stats"})
    assert_error(refused, 405, "send it with PUT")
    assert refused.headers["allow"] == "PUT, POST"
    answer = compat.get(PREDICT, params={"datax": "stats[x]"})
    assert answer.status_code == 200 and len(answer.json()["result"]) == 20
    other_site = compat.get(
        PREDICT, params={"datax": "stats[x]"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert_error(other_site, 403)


def test_dataset_reads(compat: TestClient, store: Omega) -> None:
    window = compat.get("/api/v1/dataset/stats", params={"limit": 2, "skip": 3, "columns": "x"})
    assert window.json() == {
        "data": {"x": {"0": 3.0, "1": 4.0}},
        "index": {"type": "Index", "values": [3, 4]},
    }
    listed = compat.get(
        "/api/v1/dataset/stats", params={"orient": "list", "x__lt": 2, "columns": "x,region"}
    )
    assert listed.json()["data"] == {"x": [0.0, 1.0], "region": ["EU", "US"]}
    split = compat.get(
        "/api/v1/dataset/stats", params={"orient": "split", "x__lt": 1, "columns": "x"}
    )
    assert split.json()["data"] == {"columns": ["x"], "index": [0], "data": [[0.0]]}
    plain = compat.get("/api/v1/dataset/plain")
    assert plain.json() == {"data": [5, 6], "index": {"type": None, "values": None}}
    assert_error(
        compat.get("/api/v1/dataset/stats", params={"orient": "table"}), 400, "orient takes"
    )
    assert_error(compat.get("/api/v1/dataset/stats", params={"limit": "-1"}), 400, "whole number")
    assert_error(compat.get("/api/v1/dataset/plain", params={"x": "1"}), 400, "apply to DataFrames")


def test_a_database_table_reads_in_the_same_shape(
    compat: TestClient, store: Omega, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL)")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 5.0), (2, 50.0), (3, 500.0)")
    engine.dispose()
    store.datasets.put(f"sqlite:///{tmp_path / 'shop.db'}", "shop")
    answer = compat.get("/api/v1/dataset/shop", params={"table": "orders", "amount__gt": 10})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"id": {"0": 2, "1": 3}, "amount": {"0": 50.0, "1": 500.0}}
    assert answer.json()["index"]["values"] == [0, 1]


def test_dataset_reads_keep_the_row_limit(store: Omega) -> None:
    with local_client(create_app(store, compat="omegaml", max_rows=5)) as client:
        assert_error(client.get("/api/v1/dataset/stats"), 413, "at most 5")
        assert (
            len(client.get("/api/v1/dataset/stats", params={"x__lt": 5}).json()["index"]["values"])
            == 5
        )


def test_script_arguments_given_twice_are_refused(compat: TestClient) -> None:
    response = compat.post("/api/v1/script/any/run", params={"n": "1"}, json={"n": 2})
    assert_error(response, 400, "given in the body and the query")
