"""omega-ml's REST API, as its clients use it, against real ``om runtime serve`` processes.

Each case is written from omega-ml's documented behaviour: the request and
response pairs of its REST API tests (models sync and async, datasets,
buckets, jobs, scripts) and its REST guide. Every case runs against
``om runtime serve --compat omegaml``; a case whose expected answer the
native shapes also give (the status and the fields it checks) runs against a
native server as well.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from omops.omega import Omega

from .conftest import Served
from .exchanges import ANY, ISO, TASK_LOCATION, Case, Exchange, location, resource_of, send

INLINE = {"columns": ["v"], "data": {"v": [5]}}  # omega-ml's predict body: data as columns
ASYNC = {"async": "true"}
BUCKET = {"bucket": "mybucket"}


def predict(model: str, expect: dict[str, Any], **request: Any) -> Exchange:
    """``PUT /api/v1/model/<model>/predict``, the body omega-ml's tests send unless given."""
    request.setdefault("json", INLINE)
    return Exchange("PUT", f"/api/v1/model/{model}/predict", body=expect, **request)


def _put_twice(store: Omega) -> None:
    frame = store.datasets.get("putme")
    assert list(frame["x"]) == list(range(10)) * 2
    assert list(frame["s"]) == [str(v) for v in range(10)] * 2
    assert str(frame["s"].dtype) in ("str", "string", "object")
    assert frame["x"].dtype == "int64"


def _written_from_to_json(store: Omega) -> None:
    frame = store.datasets.get("sample")
    assert list(frame["x"]) == list(range(10)) and list(frame.index) == list(range(10))


def _dropped(store: Omega) -> None:
    assert not store.datasets.exists("dropme")


def _in_the_bucket(store: Omega) -> None:
    assert list(store["mybucket"].datasets.get("bucketput")["x"]) == [7]
    assert not store.datasets.exists("bucketput")


def _job_results(count: int) -> dict[str, object]:
    return {
        "job": "testjob",
        "created": ISO,
        "job_results": lambda names: len(names) == count,
        "job_runs": lambda runs: len(runs) == count,
    }


MODELS = [
    Case(
        "model metadata, with a trailing slash",
        (
            Exchange(
                "GET",
                "/api/v1/model/regression/",
                body={
                    "model": "regression",
                    "result": {"name": "regression", "kind": "sklearn.joblib", "created": ISO},
                },
            ),
        ),
        native=False,  # native: the metadata itself, not wrapped
    ),
    Case(
        "predict from data inline (data as a dict of columns)",
        (predict("regression", {"model": "regression", "result": [10.0]}),),
        native=True,
    ),
    Case(
        "predict from a dataset holding a plain list",
        (
            predict(
                "regression",
                {"model": "regression", "result": [10.0]},
                params={"datax": "foo"},
                json={},
            ),
        ),
        native=True,
    ),
    Case(
        "predict with a path as model and dataset name",
        (
            predict(
                "project/test/regression",
                {"model": "project/test/regression", "result": [10.0]},
                params={"datax": "project/test/foo"},
                json={},
            ),
        ),
        native=True,
    ),
    Case(
        "predict with earlier revisions: name^ and name@tag echoed as requested",
        (
            predict("versioned^", {"model": "versioned^", "result": [10.0]}),
            predict("versioned", {"model": "versioned", "result": [20.0]}),
            predict("versioned@commit1", {"model": "versioned@commit1", "result": [10.0]}),
        ),
        native=False,  # native: model is the stored name, without ^ or @tag
    ),
    Case(
        "earlier revisions answer natively too",
        (
            predict("versioned^", {"result": [10.0]}),
            predict("versioned@commit2^", {"result": [10.0]}),
        ),
        native=True,
    ),
    Case(
        "predict with GET and ?datax= (the REST guide's form)",
        (
            Exchange(
                "GET",
                "/api/v1/model/regression/predict/",
                params={"datax": "foo"},
                body={"model": "regression", "result": [10.0]},
            ),
        ),
        native=False,  # native: GET of an action is 405
    ),
    Case(
        "fit waits for the model, then predicts (the REST guide)",
        (
            Exchange(
                "PUT",
                "/api/v1/model/mymodel/fit/",
                params={"datax": "datax", "datay": "datay"},
                body={"model": "mymodel", "result": ANY},
            ),
            Exchange(
                "GET",
                "/api/v1/model/mymodel/predict/",
                params={"datax": "datax"},
                body={"model": "mymodel", "result": [float(2 * v) for v in range(10)]},
            ),
        ),
        native=False,  # native: fit answers 202 unless ?async=false
    ),
    Case(
        "predict without input is a 400 with a message",
        (
            Exchange(
                "PUT",
                "/api/v1/model/regression/predict",
                status=400,
                body={"message": re.compile(r"\S")},
            ),
        ),
        native=True,
    ),
    Case(
        "a model that does not exist is a 400 with a message",
        (
            Exchange(
                "PUT",
                "/api/v1/model/nosuchmodel/predict",
                json=INLINE,
                status=400,
                body={"message": re.compile("nosuchmodel")},
            ),
        ),
        native=False,  # native: 404
    ),
]

ASYNC_MODELS = [
    Case(
        "async predict: 202 and the result's Location",
        (
            Exchange(
                "PUT",
                "/api/v1/model/regression/predict",
                json=INLINE,
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
            ),
        ),
        native=True,
    ),
    Case(
        "async predict from data inline: the task's response",
        (
            Exchange(
                "PUT",
                "/api/v1/model/regression/predict",
                json=INLINE,
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
                body={"resource_uri": "/api/v1/model/regression/predict", "task_id": ANY},
            ),
            Exchange(
                "GET",
                location,
                json=resource_of,
                poll=True,
                body={
                    "task_id": ANY,
                    "status": "SUCCESS",
                    "response": {"model": "regression", "result": [10.0]},
                },
            ),
        ),
        native=False,  # native: {id, status, result}
    ),
    Case(
        "async predict from a dataset",
        (
            Exchange(
                "PUT",
                "/api/v1/model/regression/predict",
                params={"datax": "foo"},
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
            ),
            Exchange(
                "GET",
                location,
                json=resource_of,
                poll=True,
                body={"status": "SUCCESS", "response": {"model": "regression", "result": [10.0]}},
            ),
        ),
        native=False,
    ),
    Case(
        "async predict of name^ echoes name^",
        (
            Exchange(
                "PUT",
                "/api/v1/model/versioned^/predict",
                json=INLINE,
                headers=ASYNC,
                status=202,
            ),
            Exchange(
                "GET",
                location,
                json=resource_of,
                poll=True,
                body={"status": "SUCCESS", "response": {"model": "versioned^", "result": [10.0]}},
            ),
        ),
        native=False,
    ),
    Case(
        "async fit, its result asked for with ?resource_uri= (the REST guide)",
        (
            Exchange(
                "PUT",
                "/api/v1/model/fitasync/fit",
                params={"datax": "datax", "datay": "datay", "async": "1"},
                status=202,
                location=TASK_LOCATION,
            ),
            Exchange(
                "GET",
                lambda previous: location(previous).split("?")[0],
                params={"resource_uri": "/api/v1/model/fitasync/"},
                poll=True,
                body={"status": "SUCCESS", "response": {"model": "fitasync", "result": ANY}},
            ),
        ),
        native=False,
    ),
]

DATASETS = [
    Case(
        "dataset query",
        (
            Exchange(
                "GET",
                "/api/v1/dataset/test",
                body={
                    "data": {
                        "x": lambda column: len(column) == 100 and column["99"] == 99,
                        "y": lambda column: len(column) == 100,
                    },
                    "index": {"type": ANY, "values": list(range(100))},
                },
            ),
        ),
        native=False,  # native: records
    ),
    Case(
        "dataset query with a filter keeps the index values",
        (
            Exchange(
                "GET",
                "/api/v1/dataset/test/",
                params={"x__gte": "90"},
                body={
                    "data": {"x": {str(i): 90 + i for i in range(10)}, "y": ANY},
                    "index": {"values": list(range(90, 100))},
                },
            ),
        ),
        native=False,
    ),
    Case(
        "dataset query with orient=records",
        (
            Exchange(
                "GET",
                "/api/v1/dataset/test",
                params={"x__lt": "2", "orient": "records"},
                body={"data": [{"x": 0, "y": 0}, {"x": 1, "y": 1}], "index": {"values": [0, 1]}},
            ),
        ),
        native=False,
    ),
    Case(
        "dataset put with dtypes, replacing then appending",
        (
            Exchange(
                "PUT",
                "/api/v1/dataset/putme",
                json={
                    "data": {
                        "x": list(range(10)),
                        "y": list(range(10)),
                        "s": [str(v) for v in range(10)],
                    },
                    "dtypes": {"s": "str"},
                    "append": False,
                },
            ),
            Exchange(
                "PUT",
                "/api/v1/dataset/putme",
                json={
                    "data": {
                        "x": list(range(10)),
                        "y": list(range(10)),
                        "s": list(range(10)),  # numbers: "dtypes" makes them text
                    },
                    "dtypes": {"s": "str"},
                    "append": True,
                },
            ),
        ),
        native=True,
        after=_put_twice,
    ),
    Case(
        "dataset put of DataFrame.to_json() (the REST guide's writing data)",
        (
            Exchange(
                "PUT",
                "/api/v1/dataset/sample/",
                json={
                    "data": {"x": {str(i): i for i in range(10)}},
                    "dtypes": {"x": "int64"},
                    "orient": "dict",
                    "index": {"type": "Int64Index", "values": list(range(10))},
                    "name": "sample",
                    "append": False,
                },
            ),
        ),
        native=True,
        after=_written_from_to_json,
    ),
    Case(
        "dataset delete: 404 when missing, 200 when dropped",
        (
            Exchange("DELETE", "/api/v1/dataset/nosuchdata", status=404),
            Exchange("DELETE", "/api/v1/dataset/dropme", status=200),
        ),
        native=True,
        after=_dropped,
    ),
]

BUCKETS = [
    Case(
        "predict in the bucket the bucket header names",
        (predict("regression", {"model": "regression", "result": [10.0]}, headers=BUCKET),),
        native=True,
    ),
    Case(
        "a model of the default bucket is not in another one",
        (
            Exchange(
                "PUT",
                "/api/v1/model/defaultonly/predict",
                json={"columns": ["v"], "data": [{"v": [5]}]},
                headers=BUCKET,
                status=400,
                body={"message": re.compile("defaultonly")},
            ),
            predict("defaultonly", {"result": [10.0]}),
        ),
        native=False,  # native: 404
    ),
    Case(
        "bucket and Omops-Bucket that disagree are a 400",
        (
            Exchange(
                "PUT",
                "/api/v1/model/regression/predict",
                json=INLINE,
                headers={**BUCKET, "Omops-Bucket": "default"},
                status=400,
                body={"message": re.compile("different buckets")},
            ),
        ),
        native=True,
    ),
    Case(
        "a dataset read in the bucket the header names",
        (
            Exchange(
                "GET",
                "/api/v1/dataset/bucketdata",
                headers=BUCKET,
                body={"data": {"x": {"0": 1, "1": 2, "2": 3}}},
            ),
        ),
        native=False,
    ),
    Case(
        "a dataset put into the bucket the header names",
        (
            Exchange(
                "PUT",
                "/api/v1/dataset/bucketput",
                json={"data": {"x": [7]}, "append": False},
                headers=BUCKET,
            ),
        ),
        native=True,
        after=_in_the_bucket,
    ),
]

JOBS = [
    Case(
        "job info",
        (
            Exchange(
                "GET",
                "/api/v1/job/infojob/",
                body={"job": "infojob", "created": ISO, "job_results": [], "job_runs": []},
            ),
        ),
        native=False,
    ),
    Case(
        "job run waits and answers the job; its result notebook names its source",
        (
            Exchange("POST", "/api/v1/job/testjob/run", body=_job_results(1)),
            Exchange(
                "GET",
                lambda previous: f"/api/v1/job/{previous.json()['job_results'][0]}/",
                body={"source_job": "testjob", "created": ISO},
            ),
        ),
        native=False,  # native: runs are tasks unless ?async=false
    ),
    Case(
        "async job run",
        (
            Exchange(
                "POST",
                "/api/v1/job/asyncjob/run",
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
            ),
        ),
        native=True,
    ),
    Case(
        "async job run: the task's response is the job",
        (
            Exchange(
                "POST",
                "/api/v1/job/asyncjob/run",
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
                body={"job": "asyncjob", "task_id": ANY},
            ),
            Exchange(
                "GET",
                location,
                json=resource_of,
                poll=True,
                body={
                    "status": "SUCCESS",
                    "response": {"job": "asyncjob", "job_results": lambda n: len(n) >= 1},
                },
            ),
        ),
        native=False,
    ),
]

SCRIPTS = [
    Case(
        "script run: the query and the body are its arguments",
        (
            Exchange(
                "POST",
                "/api/v1/script/helloworld/run",
                params={"text": "foo"},
                json={"foo": "bar"},
                body={
                    "script": "helloworld",
                    "runtimes": ANY,
                    "started": ISO,
                    "result": ["hello from helloworld", {"text": "foo", "foo": "bar"}],
                },
            ),
        ),
        native=False,  # native: runs are tasks unless ?async=false
    ),
    Case(
        "async script run",
        (
            Exchange(
                "POST",
                "/api/v1/script/helloworld/run",
                params={"text": "foo"},
                headers=ASYNC,
                status=202,
                location=TASK_LOCATION,
            ),
        ),
        native=True,
    ),
    Case(
        "async script run: the task's response is the run",
        (
            Exchange(
                "POST",
                "/api/v1/script/helloworld/run",
                params={"text": "foo"},
                headers=ASYNC,
                status=202,
            ),
            Exchange(
                "GET",
                location,
                json=resource_of,
                poll=True,
                body={
                    "status": "SUCCESS",
                    "response": {
                        "runtimes": ANY,
                        "result": ["hello from helloworld", {"text": "foo"}],
                    },
                },
            ),
        ),
        native=False,
    ),
]

CASES = [*MODELS, *ASYNC_MODELS, *DATASETS, *BUCKETS, *JOBS, *SCRIPTS]
RUNS = [
    pytest.param(case, profile, id=f"{profile}: {case.name}")
    for case in CASES
    for profile in ("omegaml", "native")
    if profile == "omegaml" or case.native
]


@pytest.mark.parametrize(("case", "profile"), RUNS)
def test_omega_ml_client_exchange(case: Case, profile: str, servers: dict[str, Served]) -> None:
    served = servers[profile]
    previous = None
    with served.server.client() as client:
        for exchange in case.exchanges:
            previous = send(client, exchange, previous)
    if case.after is not None:
        case.after(served.store)
