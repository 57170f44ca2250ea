"""One validation for every door: the library and the team server's HTTP API accept and refuse
the same values (Hypothesis drives both with the same generated values), and the values that
broke the HTTP API on main are refused there with a 4xx, leaving the server healthy."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_remote import RunningServer, start_server
from modelyard import validation
from modelyard.errors import ModelyardError
from modelyard.workspace import Workspace

NAME_SPECIALS = [
    "ok",
    "a%b",
    "%",
    "a_b",
    "../x",
    "a/b",
    "a\\b",
    "a\nb",
    "a\x00b",
    "a\x1b[31m",
    "x" * 128,
    "x" * 129,
    "-x",
    "Ünïcode",
    "a b",
    "",
]
ALIAS_SPECIALS = [
    "production",
    "Production",
    "PRODUCTION",
    " production",
    "production ",
    "production\n",
    "ｐｒｏｄｕｃｔｉｏｎ",  # fullwidth: NFKC folds it
    "pro\u200bduction",  # zero-width space
    "staging",
    "latest",
    "a" * 64,
    "a" * 65,
    "canary\r",
]
names = st.one_of(st.sampled_from(NAME_SPECIALS), st.text(max_size=140))
aliases = st.one_of(st.sampled_from(ALIAS_SPECIALS), st.text(max_size=70))
metric_values = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, 1e308, 2**1100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**80), 2**80),
)
param_values = st.one_of(
    st.sampled_from(["", "a\x00b", "x" * 6000, "x" * 6001, "line\nbreak", "inf"]),
    st.text(max_size=50),
)
page_numbers = st.one_of(
    st.sampled_from([0, 1, 10_000, 10_001, 1_000_000_000, 1_000_000_001, -1, 2**63, 2**70]),
    st.integers(-(2**70), 2**70),
)
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Doors:
    lib: Workspace
    server: RunningServer
    lib_run: Any
    http_run: str
    steps: Iterator[int]
    tmp: Path

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}/api/v1/store/{path}",
            # json.dumps writes NaN and Infinity as the JSON extensions Python's parser reads:
            # exactly what a client sending them over the wire does.
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {token or self.server.admin_token}",
                "Content-Type": "application/json",
            },
            timeout=30,
        )


def _model(ws: Workspace) -> None:
    ws.store.models.add_version(
        "m",
        digest="sha256:" + "0" * 64,
        flavor="sklearn",
        signature=None,
        requirements=None,
        run_id=None,
        source=None,
    )


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    from modelyard.tracking import start_run

    tmp = tmp_path_factory.mktemp("doors")
    lib, _ = Workspace.init(tmp / "lib", environ={})
    served, _ = Workspace.init(tmp / "served", environ={})
    _model(lib)
    _model(served)
    server = start_server(served)
    run = start_run("parity", workspace=lib, heartbeat_interval_s=3600)
    doors = Doors(lib, server, run, "", count(), tmp)
    created = doors.post("runs/create", {"run_id": "f" * 32, "name": "parity"})
    assert created.status_code == 200, created.text
    doors.http_run = "f" * 32
    yield doors
    run.end()
    server.stop()
    lib.close()
    served.close()


def _library(call: Callable[[], object]) -> bool:
    """True if the library accepted, False if it refused with a modelyard error; anything
    else (a bare ValueError, a database error) fails the test."""
    try:
        call()
    except ModelyardError:
        return False
    return True


def _http(answer: httpx.Response) -> bool:
    assert answer.status_code < 500, answer.text
    return answer.status_code < 300


@HYPOTHESIS
@given(value=names)
def test_dataset_names(doors: Doors, value: str) -> None:
    from modelyard.data import add

    source = doors.tmp / "data.txt"
    source.write_text("x\n")
    by_library = _library(lambda: add(source, name=value, workspace=doors.lib))
    by_http = _http(
        doors.post(
            "datasets/add_version",
            {
                "name": value,
                "digest": "sha256:" + "1" * 64,
                "kind": "file",
                "format": "txt",
                "size": 2,
                "file_count": 1,
                "schema": None,
                "profile": None,
                "source": None,
            },
        )
    )
    assert by_library == by_http, value


@HYPOTHESIS
@given(value=aliases)
def test_aliases(doors: Doors, value: str) -> None:
    from modelyard.models import promote

    by_library = _library(lambda: promote("m@1", value, workspace=doors.lib))
    by_http = _http(
        doors.post(
            "models/move_alias",
            {"name": "m", "alias": value, "version": 1, "actor": None},
        )
    )
    assert by_library == by_http, value
    if by_library:
        assert validation.normalise_alias(value) not in validation.PROTECTED_ALIASES or (
            value == "production"
        )


@HYPOTHESIS
@given(value=metric_values)
def test_metric_values(doors: Doors, value: float) -> None:
    by_library = _library(lambda: doors.lib_run.log_metric("m", value))
    point = ["m", value, next(doors.steps), datetime.now(UTC).isoformat()]
    by_http = _http(doors.post("runs/log_metrics", {"run_id": doors.http_run, "points": [point]}))
    assert by_library == by_http, value
    assert (
        by_library == (not isinstance(value, float) or math.isfinite(value)) or abs(value) > 1.7e308
    )


@HYPOTHESIS
@given(value=param_values)
def test_param_values(doors: Doors, value: str) -> None:
    key = f"p{next(doors.steps)}"
    by_library = _library(lambda: doors.lib_run.log_param(key, value))
    by_http = _http(
        doors.post("runs/log_params", {"run_id": doors.http_run, "params": {key: value}})
    )
    assert by_library == by_http, value


@HYPOTHESIS
@given(limit=page_numbers, offset=page_numbers)
def test_pagination(doors: Doors, limit: int, offset: int) -> None:
    by_library = _library(lambda: doors.lib.store.runs.search(limit=limit, offset=offset))
    by_http = _http(doors.post("runs/search", {"limit": limit, "offset": offset}))
    assert by_library == by_http, (limit, offset)
    assert by_library == (1 <= limit <= 10_000 and 0 <= offset <= 1_000_000_000)


# ---- what broke the HTTP API on main ------------------------------------------------------


def test_an_infinite_metric_is_refused_and_search_keeps_working(doors: Doors) -> None:
    """On main ±Inf was stored with 200, and every run search answered 500 afterwards."""
    for value in ("Infinity", "-Infinity", "NaN"):  # NaN got a misleading 409 on main
        raw = (
            f'{{"run_id": "{doors.http_run}", '
            f'"points": [["m", {value}, 999999, "2026-01-01T00:00:00Z"]]}}'
        )
        answer = httpx.post(
            f"{doors.server.url}/api/v1/store/runs/log_metrics",
            content=raw,
            headers={
                "Authorization": f"Bearer {doors.server.admin_token}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status_code == 422, answer.text
        assert "only finite values" in answer.json()["message"]
    assert doors.post("runs/search", {"limit": 10}).status_code == 200
    ui = httpx.get(
        f"{doors.server.url}/api/v1/ui/runs",
        headers={"Authorization": f"Bearer {doors.server.admin_token}"},
    )
    assert ui.status_code == 200


def test_a_huge_offset_is_a_4xx(doors: Doors) -> None:
    """On main the dashboard's runs page answered 500 (the database's integer overflowed)."""
    ui = httpx.get(
        f"{doors.server.url}/api/v1/ui/runs",
        params={"offset": 10**19},
        headers={"Authorization": f"Bearer {doors.server.admin_token}"},
    )
    assert ui.status_code == 422
    assert "offset must be an integer" in ui.json()["message"]


def test_a_wildcard_dataset_name_is_refused_and_data_list_keeps_working(
    doors: Doors, tmp_path: Path
) -> None:
    """On main a ``%`` name was stored over HTTP, and ``data list`` failed for every client."""
    answer = doors.post(
        "datasets/add_version",
        {
            "name": "a%b",
            "digest": "sha256:" + "2" * 64,
            "kind": "file",
            "format": "csv",
            "size": 1,
            "file_count": 1,
            "schema": None,
            "profile": None,
            "source": None,
        },
    )
    assert answer.status_code == 422
    env = {"MODELYARD_URL": doors.server.url, "MODELYARD_TOKEN": doors.server.admin_token}
    Workspace.init(tmp_path / "client", environ=env)[0].close()
    listed = CliRunner(env=env).invoke(
        __import__("modelyard.cli.main", fromlist=["cli"]).cli,
        ["-C", str(tmp_path / "client"), "data", "list"],
    )
    assert listed.exit_code == 0, listed.output


@pytest.mark.parametrize("alias", ["Production", "PRODUCTION", "ｐｒｏｄｕｃｔｉｏｎ"])
def test_a_writer_cannot_make_a_look_alike_of_production(doors: Doors, alias: str) -> None:
    """On main a write token moved ``PRODUCTION`` (the admin check compared exact strings)."""
    writer = doors.server.token("write")
    body = {"name": "m", "alias": alias, "version": 1, "actor": None}
    answer = doors.post("models/move_alias", body, token=writer)
    assert 400 <= answer.status_code < 500
    assert answer.status_code != 200
    moved = doors.post("models/move_alias", {**body, "alias": "production"}, token=writer)
    assert moved.status_code == 403  # the real one needs admin


def test_the_normalisation_rules() -> None:
    assert validation.normalise_alias(" ＰＲＯＤＵＣＴＩＯＮ ") == "production"
    assert validation.is_protected_alias("Production")
    assert not validation.is_protected_alias("prod")
    assert validation.like_pattern("a%b_c\\") == "a\\%b\\_c\\\\"
