"""A key for one bucket learns nothing about another: not from /metrics, not from task ids."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server.support import X_SPLIT, Server, assert_error, classifier, local_client, wait_for_task

from omops.omega import Omega

PREDICT = "/api/v1/model/{}/predict"


@pytest.fixture(scope="module")
def keyed(
    template_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    """A keyed server with the model 'secret-model' in bucket 'b' and keys for 'a', 'b' and '*'."""
    from server.support import copy_home

    home = copy_home(template_home, tmp_path_factory.mktemp("buckets") / "home")
    om = Omega(home=str(home))
    om["a"].models.put(classifier(), "public-model")
    om["b"].models.put(classifier(), "secret-model")
    tokens = {
        name: om.catalog.api_keys.create(role="write", buckets=buckets)[0]
        for name, buckets in {"a": ["a"], "b": ["b"], "all": ["*"]}.items()
    }
    om.catalog.close()
    with Server(home, "--require-keys") as server:
        yield server, tokens


def client(server: Server, token: str, bucket: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return server.client(**headers, **({"Omops-Bucket": bucket} if bucket else {}))


def test_metrics_show_a_key_only_its_buckets_models(keyed: tuple[Server, dict[str, str]]) -> None:
    server, tokens = keyed
    with client(server, tokens["b"], "b") as b:
        assert b.post(PREDICT.format("secret-model"), json=X_SPLIT).status_code == 200
    with client(server, tokens["a"], "a") as a:
        assert a.post(PREDICT.format("public-model"), json=X_SPLIT).status_code == 200
        text = a.get("/metrics").text  # no Omops-Bucket needed: any valid key
        assert "secret-model" not in text
        assert (
            'route="/api/v1/model/{name:path}/{action}",status="200"' in text
        )  # counters by route
    with client(server, tokens["all"]) as everything:
        assert "secret-model" in everything.get("/metrics").text
    assert_error(httpx.get(f"{server.url}/metrics", timeout=60), 401, "needs an API key")


def test_metrics_show_a_key_its_own_models(keyed: tuple[Server, dict[str, str]]) -> None:
    server, tokens = keyed
    with client(server, tokens["a"], "a") as a:
        assert a.post(PREDICT.format("public-model"), json=X_SPLIT).status_code == 200
        text = a.get("/metrics").text
    assert re.search(r'omops_predictions_total\{bucket="a",model="public-model"\} \d+', text), text


def test_task_ids_of_another_bucket_look_like_no_task(keyed: tuple[Server, dict[str, str]]) -> None:
    server, tokens = keyed
    with client(server, tokens["b"], "b") as b:
        started = b.post(PREDICT.format("secret-model"), params={"async": "true"}, json=X_SPLIT)
        assert started.status_code == 202, started.text
        task = started.json()["task"]
        wait_for_task(b, f"/api/v1/task/{task}/result")
    made_up = "0" * len(task)
    with client(server, tokens["all"], "a") as a:  # a key that may read both buckets
        for what in ("status", "result"):
            theirs = a.get(f"/api/v1/task/{task}/{what}")
            none = a.get(f"/api/v1/task/{made_up}/{what}")
            assert_error(theirs, 404, "not_found")
            assert theirs.json()["message"].replace(task, made_up) == none.json()["message"]
            assert (
                theirs.status_code == none.status_code
                and theirs.headers["content-length"] == none.headers["content-length"]
            )


def test_keyless_metrics_answer_loopback_clients_only(store_om: Omega) -> None:
    from omops.server import create_app

    far = {"client": ("192.0.2.9", 40000)}
    with local_client(create_app(store_om, insecure=True), **far) as client:
        assert client.get("/api/v1/model").status_code == 200  # --insecure: everything is open
        assert_error(client.get("/metrics"), 403, "loopback clients only")
    with local_client(create_app(store_om, insecure=True)) as client:
        assert client.get("/metrics").status_code == 200
