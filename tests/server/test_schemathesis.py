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
from schemathesis.openapi.checks import UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from omops.omega import Omega
from omops.server._deps import ASYNC_ACTIONS, SYNC_ACTIONS

from .support import Server, copy_home

#: Examples per strategy of each operation (see ``strategies``); negative cases are the
#: slowest to generate. 13 operations take parameters, 7 of them a real name: about 575
#: cases; and 70 of the model's actions on inputs it takes.
EXAMPLES = {"positive": 22, "negative": 6, "real-names": 35, "real-inputs": 35}
MINIMUM_CASES = 500
ALL_BUT_INPUTS = ("positive", "negative", "real-names")
REAL_NAMES = {"/api/v1/model": "forecast", "/api/v1/dataset": "stats"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def strategies(operation: Any) -> dict[str, st.SearchStrategy]:
    """Valid and invalid requests, and valid ones aimed at the stored objects."""
    found = {"positive": operation.as_strategy(GenerationMode.POSITIVE)}
    if any(True for _ in operation.iter_parameters()) or operation.body:
        found["negative"] = operation.as_strategy(GenerationMode.NEGATIVE)
    names = [name for prefix, name in REAL_NAMES.items() if operation.path.startswith(prefix)]
    if names and "{name}" in operation.path:
        real: dict[str, Any] = {"name": st.just(names[0])}
        if "{action}" in operation.path:
            real["action"] = st.sampled_from(SYNC_ACTIONS + ASYNC_ACTIONS)
        found["real-names"] = st.fixed_dictionaries(real).flatmap(
            lambda params: operation.as_strategy(GenerationMode.POSITIVE, path_parameters=params)
        )
    if operation.path == "/api/v1/model/{name}/{action}":
        found["real-inputs"] = st.tuples(
            st.sampled_from(SYNC_ACTIONS + ASYNC_ACTIONS), model_inputs(), st.booleans()
        ).flatmap(
            lambda args: operation.as_strategy(
                GenerationMode.POSITIVE,
                path_parameters={"name": "forecast", "action": args[0]},
                body=args[1],
                query={"async": "true"} if args[2] else {},
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
    server: Server, headers: dict[str, str], modes: tuple[str, ...] = ALL_BUT_INPUTS
) -> Counter[str]:
    """Fuzz every operation with the strategies named in ``modes``; the cases run, by label."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    executed: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    with requests.Session() as session:
        session.headers.update(headers)
        for operation in operations:
            for mode, strategy in strategies(operation).items():
                if mode in modes:
                    label = f"{operation.label} {mode}"
                    fuzz(strategy, EXAMPLES[mode], session=session, label=label, executed=executed)
    print(f"schemathesis: {sum(executed.values())} cases over {len(executed)} strategies")
    return executed


def assert_all_reached(server: Server, executed: Counter[str]) -> None:
    operations = schemathesis.openapi.from_url(f"{server.url}/openapi.json").get_all_operations()
    reached = {label.rsplit(" ", 1)[0] for label in executed}
    assert reached == {result.ok().label for result in operations}
    assert sum(executed.values()) >= MINIMUM_CASES, executed


@pytest.fixture
def home(template_home: Path, tmp_path: Path) -> Path:
    return copy_home(template_home, tmp_path / "home")


def test_a_keyless_server_conforms_to_its_document(home: Path) -> None:
    with Server(home, "--max-body", str(64 * 1024)) as server:
        assert_all_reached(server, fuzz_server(server, {}))


def test_a_keyed_server_conforms_to_its_document(home: Path) -> None:
    om = Omega(home=str(home))
    token, _ = om.catalog.api_keys.create(role="admin", buckets=["*"])
    om.catalog.close()
    with Server(home, "--require-keys", "--max-body", str(64 * 1024)) as server:
        assert_all_reached(server, fuzz_server(server, {"Authorization": f"Bearer {token}"}))


class Undocumented202(AssertionError):
    """The only conformance failure is a 202 the document does not list."""


@pytest.mark.xfail(
    strict=True,
    raises=Undocumented202,
    reason="issue 10 item 9: routers/model.py (the lead's) does not document the 202 that "
    "fit, partial_fit and ?async=true answer",
)
def test_model_actions_on_inputs_they_take_conform(home: Path) -> None:
    with Server(home) as server:
        try:
            executed = fuzz_server(server, {}, modes=("real-inputs",))
        except FailureGroup as group:
            failures = group.exceptions
            if all(isinstance(f, UndefinedStatusCode) and f.status_code == 202 for f in failures):
                raise Undocumented202(str(group)) from group
            raise
    assert sum(executed.values()) == 2 * EXAMPLES["real-inputs"]
