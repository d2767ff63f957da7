"""Schemathesis against the env server's OpenAPI document (real uvicorn): no 5xx answer for any generated input."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import running_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis")


def test_generated_requests_never_get_a_server_error() -> None:
    with running_server(envs=["resrl/Echo-v0"], workers=1, max_sessions=32, session_ttl_s=5) as running:
        schema = schemathesis.openapi.from_url(running.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/sessions", "/v1/sessions/{session_id}/step", "/v1/sessions:step"}
        seen: dict[int, int] = {}

        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]  # valid and invalid input
        strategies = [op.as_strategy(generation_mode=mode) for op in operations for mode in modes]

        @given(case=st.one_of(*strategies))
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            response = case.call(base_url=running.url, timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        check()
    assert {400, 404, 422} <= set(seen)  # invalid JSON, unknown sessions, wrong shapes all met
    assert sum(seen.values()) >= 100 and any(status >= 400 for status in seen)
