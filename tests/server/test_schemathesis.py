"""Property-based: schemathesis generates requests from the app's own OpenAPI document.

Every operation is fuzzed in-process against the ASGI app with a prepared
store (model 'forecast', dataset 'stats'): valid and invalid requests, random
names, and the real names so that requests reach the models and the data. No
answer may be a 5xx, and every error must be JSON ``{"error", "message"}``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from omops.omega import Omega
from omops.server import create_app
from omops.server._deps import ASYNC_ACTIONS, SYNC_ACTIONS

#: Examples per strategy of each operation (see ``strategies``); negative cases are the
#: slowest to generate. 13 operations take parameters, 7 of them a real name: about 575 cases.
EXAMPLES = {"positive": 22, "negative": 6, "real-names": 35}
MINIMUM_CASES = 500
REAL_NAMES = {"/api/v1/model": "forecast", "/api/v1/dataset": "stats"}
_TEXT_ROUTES = ("/metrics", "/docs")


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
    return found


def check_answer(case: Any, response: Any) -> None:
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error", "message"}, body
        assert isinstance(body["error"], str) and isinstance(body["message"], str)
    elif not case.path.startswith(_TEXT_ROUTES):
        response.json()


def fuzz(strategy: st.SearchStrategy, examples: int, label: str, executed: Counter[str]) -> None:
    """Run up to ``examples`` generated cases; count those that reached the app."""

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
        check_answer(case, case.call())
        executed[label] += 1

    run()


def test_generated_requests_never_fail_on_the_server(store: Omega) -> None:
    app = create_app(store, max_body=64 * 1024)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    executed: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode, strategy in strategies(operation).items():
            fuzz(strategy, EXAMPLES[mode], f"{operation.label} {mode}", executed)
    total = sum(executed.values())
    reached = {label.rsplit(" ", 1)[0] for label in executed}
    assert reached == {operation.label for operation in operations}
    assert total >= MINIMUM_CASES, executed
    print(f"schemathesis: {total} cases over {len(executed)} operation strategies")
