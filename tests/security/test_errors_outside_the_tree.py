"""A damaged blob store gives omops errors naming the object, never a raw exception.

Seen: a missing blob gave REST 500 ``FileNotFoundError`` (the docs promise 503
``storage_error``) and a raw ``FileNotFoundError`` in Python; a corrupted model
blob raised joblib's ``ValueError``. Now: a blob that is missing, or whose
bytes no longer match their hash, is a :class:`StorageError` (REST 503
``storage_error``) naming the object, its revision and what to do; bytes that
are intact but that the plugin cannot load (another library version) are a
:class:`PluginError` saying so.
"""

from __future__ import annotations

import copy
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from server.support import X_SPLIT, Server, assert_error, classifier, copy_home

from omops.errors import PluginError, StorageError
from omops.omega import Omega


def blob_of(om: Omega, store: str, name: str) -> str:
    revision = om.catalog.lookup(om.bucket, store, name, None)
    return om.catalog.parts(revision)[0].blob


def damage(om: Omega, store: str, name: str, how: str) -> str:
    """Delete or overwrite the (first) blob of ``name``; return its key."""
    key = blob_of(om, store, name)
    path = om.blobs.path(key)
    if how == "missing":
        os.remove(path)
    elif how == "garbage":
        Path(path).write_bytes(b"not what was stored" * 10)
    else:  # truncated
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
    return key


@pytest.fixture(scope="module")
def home(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Objects to damage, one per case, prepared before the server first loads them."""
    home = copy_home(template_home, tmp_path_factory.mktemp("damaged") / "home")
    om = Omega(home=str(home))
    for i, how in enumerate(("missing", "garbage", "truncated")):
        # Content-addressed: each case its own bytes, so that it damages only itself.
        om.datasets.put(pd.DataFrame({"x": np.arange(5.0) + i}), f"data-{how}")
        model = copy.deepcopy(classifier())
        model.damaged_how = how
        om.models.put(model, f"model-{how}")
        damage(om, "datasets", f"data-{how}", how)
        damage(om, "models", f"model-{how}", how)
    om.datasets.put({"a": 1}, "json-missing")
    damage(om, "datasets", "json-missing", "missing")
    om.close()
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    with Server(home) as served:
        yield served


@pytest.fixture(scope="module")
def om(home: Path) -> Iterator[Omega]:
    found = Omega(home=str(home))
    yield found
    found.close()


WHAT = {"missing": "is missing from", "garbage": "does not match", "truncated": "does not match"}


@pytest.mark.parametrize("how", ["missing", "garbage", "truncated"])
def test_python_says_which_object_and_what_to_do(om: Omega, how: str) -> None:
    for store, name in (("datasets", f"data-{how}"), ("models", f"model-{how}")):
        with pytest.raises(StorageError) as caught:
            getattr(om, store).get(name)
        message = str(caught.value)
        assert f"{store} {name!r}" in message and WHAT[how] in message
        assert blob_of(om, store, name) in message
        assert "restore the blob from a backup" in message and "put it again" in message
    with pytest.raises(StorageError, match="datasets 'data-.*' .*"):
        om.datasets.get(f"data-{how}", x__gt=1)  # the filtered read (DuckDB) too


def test_a_missing_json_blob(om: Omega) -> None:
    with pytest.raises(StorageError, match="datasets 'json-missing' .* is missing from"):
        om.datasets.get("json-missing")


@pytest.mark.parametrize("how", ["missing", "garbage", "truncated"])
def test_rest_answers_503_storage_error(server: Server, how: str) -> None:
    with server.client() as http:
        for accept in ("application/json", "application/vnd.apache.arrow.stream"):
            response = http.get(f"/api/v1/dataset/data-{how}", headers={"Accept": accept})
            body = assert_error(response, 503, "storage_error", f"data-{how}", WHAT[how])
            assert "Traceback" not in body["message"]
        filtered = http.get(f"/api/v1/dataset/data-{how}", params={"x__gt": "1"})
        assert_error(filtered, 503, "storage_error", f"data-{how}")
        predicted = http.post(f"/api/v1/model/model-{how}/predict", json=X_SPLIT)
        assert_error(predicted, 503, "storage_error", f"model-{how}", WHAT[how])
        assert_error(http.get("/api/v1/dataset/json-missing"), 503, "storage_error")
        assert http.get("/api/v1/dataset/stats").status_code == 200  # the rest still works


def test_intact_bytes_a_plugin_cannot_load(tmp_path: Path, monkeypatch) -> None:
    """A pickle of a class that is gone: not damage, a version problem; PluginError says so."""
    module = tmp_path / "vanishing_module.py"
    module.write_text(textwrap.dedent("class Thing:\n    pass\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing_module

    om = Omega(home=str(tmp_path / "home"))
    try:
        om.models.put(vanishing_module.Thing(), "thing", kind="python.pickle")
        module.unlink()
        del sys.modules["vanishing_module"]
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
        with pytest.raises(PluginError, match="models 'thing' .* bytes are intact"):
            om.models.get("thing")
    finally:
        om.close()


def test_the_http_client_sees_json_not_a_cut_off_stream(server: Server) -> None:
    """Errors found before the first byte is sent keep their status (the read is primed)."""
    response = httpx.get(f"{server.url}/api/v1/dataset/data-garbage", timeout=30)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
