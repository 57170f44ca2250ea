"""Property-based fuzzing of the whole REST API from its own OpenAPI spec: whatever the
input, the server answers 2xx/4xx, never 5xx."""

from __future__ import annotations

import pathlib
import tempfile
import warnings
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from modelyard.server import create_app  # noqa: E402
from modelyard.workspace import Workspace  # noqa: E402


@pytest.fixture(scope="module")
def admin_app() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        ws, _ = Workspace.init(pathlib.Path(tmp) / "ws", environ={})
        _, token = ws.store.tokens.create("fuzz", "admin")
        app = create_app(ws)
        app.state.fuzz_token = token
        yield app
        ws.close()


@pytest.mark.slow
def test_no_input_makes_the_server_fail(admin_app: Any) -> None:
    from hypothesis import given
    from schemathesis.checks import not_a_server_error

    # Schemathesis' ASGI transport goes through starlette's TestClient, which warns that its
    # httpx backend is deprecated; that warning is about the test harness, not our code, so it
    # is ignored here and only here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2.*")
        schema = schemathesis.openapi.from_asgi("/openapi.json", admin_app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 70
        headers = {"authorization": f"Bearer {admin_app.state.fuzz_token}"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=3,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])

            fuzz()
