"""Property-based: schemathesis generates requests from the server's own OpenAPI document.

Every operation is fuzzed over real HTTP against ``om runtime serve`` with a
prepared store (model 'forecast', dataset 'stats'): valid and invalid
requests, random names, and the real names so that requests reach the models
and the data. Two servers: the keyless loopback one, and one requiring keys
(called with a valid admin key for every bucket). Each answer passes
schemathesis' conformance checks: no 5xx, a documented status code and
content type, a body matching its documented schema (errors are
``{"error", "message"}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from omops.omega import Omega
from omops.runtime.actions import ACTIONS

from .support import Server, copy_home

#: Examples per strategy of each operation (see ``strategies``); negative cases are the
#: slowest to generate. 11 operations besides the model actions take parameters, 5 of them a
#: real name: about 450 cases; the two model-action operations get 196 more.
EXAMPLES = {"positive": 22, "negative": 6, "real-names": 35, "real-inputs": 35}
MINIMUM_CASES = 400
MODEL_ACTIONS = "/api/v1/model/{name}/{action}"
REAL_NAMES = {"/api/v1/model": "forecast", "/api/v1/dataset": "stats"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def strategies(operation: Any) -> dict[str, st.SearchStrategy]:
    """Valid and invalid requests, and valid ones aimed at the stored objects.

    Bodies are JSON: the binary Arrow body of the model actions has its own tests.
    """
    json_body = {"media_type": "application/json"} if operation.body else {}
    found = {"positive": operation.as_strategy(GenerationMode.POSITIVE, **json_body)}
    if any(True for _ in operation.iter_parameters()) or operation.body:
        found["negative"] = operation.as_strategy(GenerationMode.NEGATIVE, **json_body)
    names = [name for prefix, name in REAL_NAMES.items() if operation.path.startswith(prefix)]
    if names and "{name}" in operation.path:
        real: dict[str, Any] = {"name": st.just(names[0])}
        if "{action}" in operation.path:
            real["action"] = st.sampled_from(list(ACTIONS))
        found["real-names"] = st.fixed_dictionaries(real).flatmap(
            lambda params: operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters=params, **json_body
            )
        )
    if operation.path == MODEL_ACTIONS:
        found["real-inputs"] = st.tuples(
            st.sampled_from(list(ACTIONS)), model_inputs(), st.booleans()
        ).flatmap(
            lambda args: operation.as_strategy(
                GenerationMode.POSITIVE,
                path_parameters={"name": "forecast", "action": args[0]},
                body=args[1],
                query={"async": "true"} if args[2] else {},
                media_type="application/json",
            )
        )
    return found


def model_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """Bodies the model 'forecast' takes: column x, targets of both classes."""
    values = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
    return st.lists(values, min_size=2, max_size=6).map(
        lambda xs: {
            "columns": ["x"],
            "data": [[x] for x in xs],
            "y": [i % 2 for i in range(len(xs))],
        }
    )


def check_answer(case: Any, response: Any) -> None:
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error", "message"}, body


def fuzz(
    strategy: st.SearchStrategy,
    examples: int,
    *,
    session: requests.Session,
    label: str,
    executed: Counter[str],
) -> None:
    """Run up to ``examples`` generated cases; count those that reached the server."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        check_answer(case, case.call(session=session))
        executed[label] += 1

    run()


def fuzz_server(
    server: Server, headers: dict[str, str], *, model_actions: bool
) -> tuple[Counter[str], list[BaseException]]:
    """Fuzz the model-action operations, or all the others, with every strategy.

    Returns the cases run by label, and what each failing strategy raised (the
    other strategies still run).
    """
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    executed: Counter[str] = Counter()
    failures: list[BaseException] = []
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if (result.ok().path == MODEL_ACTIONS) is model_actions
    ]
    with requests.Session() as session:
        session.headers.update(headers)
        for operation in operations:
            for mode, strategy in strategies(operation).items():
                label = f"{operation.label} {mode}"
                try:
                    fuzz(strategy, EXAMPLES[mode], session=session, label=label, executed=executed)
                except (AssertionError, FailureGroup) as exc:
                    failures.append(exc)
    reached = {label.rsplit(" ", 1)[0] for label in executed}
    assert failures or reached == {operation.label for operation in operations}
    print(f"schemathesis: {sum(executed.values())} cases over {len(executed)} strategies")
    return executed, failures


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    return copy_home(template_home, tmp_path / "home")


@contextmanager
def served(home: Path, *, keys: bool) -> Iterator[tuple[Server, dict[str, str]]]:
    """A keyless server, or one requiring keys with a valid admin key for every bucket."""
    if not keys:
        with Server(home, "--max-body", str(64 * 1024)) as server:
            yield server, {}
        return
    om = Omega(home=str(home))
    token, _ = om.catalog.api_keys.create(role="admin", buckets=["*"])
    om.catalog.close()
    with Server(home, "--require-keys", "--max-body", str(64 * 1024)) as server:
        yield server, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("keys", [False, True], ids=["keyless", "keyed"])
def test_the_server_conforms_to_its_document(home: Path, keys: bool) -> None:
    with served(home, keys=keys) as (server, headers):
        executed, failures = fuzz_server(server, headers, model_actions=False)
    if failures:
        raise failures[0]
    assert sum(executed.values()) >= MINIMUM_CASES, executed


@pytest.mark.parametrize("keys", [False, True], ids=["keyless", "keyed"])
def test_model_actions_conform_to_the_document(home: Path, keys: bool) -> None:
    with served(home, keys=keys) as (server, headers):
        executed, failures = fuzz_server(server, headers, model_actions=True)
    if failures:
        raise failures[0]
    assert sum(executed.values()) == 2 * sum(EXAMPLES.values()), executed
