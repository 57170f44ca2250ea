from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.flavors import save_model
from modelyard.serving import ServeConfig, create_app, read_feedback, read_predictions

sys.path.insert(0, str(Path(__file__).parent))
from _asgi import AppClient
from _models import saved_churn


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(saved_churn(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppClient]:
    config = ServeConfig(
        log_dir=tmp_path_factory.mktemp("log"), max_body_bytes=20_000, max_batch_rows=50
    )
    with AppClient(create_app(model_dir, name="churn", version="3", config=config)) as c:
        yield c


ROW = {"a": 0.1, "b": 0.2, "c": 0.3, "city": "x"}


def v2_body(rows: int = 2, **override: Any) -> dict[str, Any]:
    inputs = [
        {"name": n, "shape": [rows], "datatype": "FP64", "data": [ROW[n]] * rows}
        for n in ("a", "b", "c")
    ]
    inputs.append({"name": "city", "shape": [rows], "datatype": "BYTES", "data": ["x"] * rows})
    return {"inputs": inputs, **override}


def test_health_and_metadata(client: AppClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/ping").status_code == 200
    assert client.get("/v2").json()["name"] == "modelyard"
    meta = client.get("/v2/models/churn").json()
    assert meta["versions"] == ["3"]
    assert [i["name"] for i in meta["inputs"]] == ["a", "b", "c", "city"]
    assert meta["inputs"][3]["datatype"] == "BYTES"
    assert client.get("/v2/models/churn/versions/3/ready").json()["ready"] is True
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/churn/versions/9").status_code == 404


def test_v2_infer_echoes_id_and_request_id(client: AppClient) -> None:
    r = client.post("/v2/models/churn/infer", json=v2_body(2, id="abc"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "abc"
    assert body["model_name"] == "churn"
    assert body["model_version"] == "3"
    out = body["outputs"][0]
    assert out["shape"] == [2]
    assert out["datatype"] == "INT64"
    assert len(out["data"]) == 2
    assert r.headers["x-request-id"]
    r = client.post(
        "/v2/models/churn/versions/3/infer", json=v2_body(1), headers={"X-Request-ID": "mine-1"}
    )
    assert r.headers["x-request-id"] == "mine-1"
    assert r.json()["id"] == "mine-1"


def test_v2_single_matrix_input_in_signature_order(client: AppClient) -> None:
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": [0.1, 0.2, 0.3, "x"]}
        ]
    }
    r = client.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b", "c", "city"], "data": [[0.1, 0.2, 0.3, "x"]]}},
        {"dataframe_records": [ROW, ROW]},
        {"instances": [ROW]},
        {"inputs": {"a": [0.1], "b": [0.2], "c": [0.3], "city": ["y"]}},
        {"instances": [[0.1, 0.2, 0.3, "x"]]},
    ],
)
def test_invocations_formats(client: AppClient, payload: dict[str, Any]) -> None:
    r = client.post("/invocations", json=payload)
    assert r.status_code == 200, r.text
    assert all(p in (0, 1) for p in r.json()["predictions"])


def test_invocations_csv(client: AppClient) -> None:
    r = client.post(
        "/invocations",
        content=b"a,b,c,city\n0.1,0.2,0.3,x\n1,2,3,y\n",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("path", "payload", "status", "needle"),
    [
        ("/invocations", {"dataframe_records": [{"a": 1.0, "b": 1.0, "c": 1.0}]}, 400, "'city'"),
        ("/invocations", {"dataframe_records": [{**ROW, "zzz": 1}]}, 400, "'zzz'"),
        ("/invocations", {"dataframe_records": [{**ROW, "a": "high"}]}, 400, "column 'a'"),
        ("/invocations", {"dataframe_records": [{**ROW, "a": None}]}, 400, "NaN"),
        ("/invocations", {"dataframe_records": []}, 400, "empty"),
        ("/invocations", {"dataframe_records": [ROW] * 51}, 400, "too many rows"),
        ("/invocations", {"nothing": 1}, 400, "dataframe_split"),
        ("/v2/models/churn/infer", v2_body(1, inputs=v2_body(1)["inputs"][:3]), 422, "'city'"),
        (
            "/v2/models/churn/infer",
            {
                "inputs": [
                    *v2_body(2)["inputs"][:3],
                    {"name": "city", "shape": [3], "datatype": "BYTES", "data": ["x"] * 2},
                ]
            },
            422,
            "city",
        ),
        (
            "/v2/models/churn/infer",
            {
                "inputs": [
                    {**v2_body(1)["inputs"][0], "datatype": "BOOL"},
                    *v2_body(1)["inputs"][1:],
                ]
            },
            422,
            "'a'",
        ),
        ("/v2/models/nope/infer", v2_body(1), 404, "nope"),
    ],
)
def test_bad_inputs_are_4xx_naming_the_field(
    client: AppClient, path: str, payload: Any, status: int, needle: str
) -> None:
    r = client.post(path, json=payload)
    assert r.status_code == status, r.text
    assert needle in r.text
    assert client.get("/v2/health/ready").status_code == 200


def test_infinity_and_bad_json(client: AppClient) -> None:
    body = b'{"dataframe_records": [{"a": 1e999, "b": 1, "c": 1, "city": "x"}]}'
    r = client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400  # orjson refuses out-of-range numbers, NaN and Infinity
    r = client.post(
        "/invocations",
        content=b'{"instances": [{"a": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    r = client.post(
        "/invocations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


def test_content_types_and_body_limit(client: AppClient) -> None:
    for ctype in ("application/python-pickle", "application/x-pickle", "application/octet-stream"):
        r = client.post("/invocations", content=b"\x80\x04", headers={"content-type": ctype})
        assert r.status_code == 415, ctype
    r = client.post(
        "/v2/models/churn/infer",
        content=b"x" * 30_000,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(30):
            yield b" " * 1000

    r = client.post("/invocations", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/invocations", json={"instances": [ROW]}).status_code == 200


def test_feedback_and_metrics(client: AppClient) -> None:
    r = client.post("/v1/feedback", json={"request_id": "mine-1", "label": 1})
    assert r.json() == {"accepted": 1}
    r = client.post(
        "/v1/feedback",
        json={"feedback": [{"request_id": "r2", "label": 0}, {"request_id": "r3", "label": 1}]},
    )
    assert r.json() == {"accepted": 2}
    assert client.post("/v1/feedback", json={"request_id": "x"}).status_code == 422
    text = client.get("/metrics").text
    assert 'modelyard_requests_total{route="/v2/models/{name}/infer",status="200"}' in text
    assert "modelyard_request_duration_seconds_bucket" in text
    assert "modelyard_batch_rows_count" in text
    assert 'modelyard_predlog_queue_depth{log="predictions"}' in text
    assert 'modelyard_predlog_dropped_total{log="predictions"} 0.0' in text
    assert "modelyard_model_load_seconds" in text
    assert "modelyard_inflight_requests" in text


def test_logs_are_flushed_on_shutdown(model_dir: Path, tmp_path: Path) -> None:
    config = ServeConfig(log_dir=tmp_path)
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        ids = [
            c.post("/invocations", json={"instances": [ROW] * 3}).headers["x-request-id"]
            for _ in range(5)
        ]
        c.post("/v1/feedback", json={"request_id": ids[0], "label": [1, 0, 1]})
    table = read_predictions(tmp_path)
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids)
    assert table.column("rows").to_pylist() == [3] * 5
    assert '"city":["x","x","x"]' in table.column("inputs")[0].as_py()
    assert read_feedback(tmp_path).column("request_id").to_pylist() == [ids[0]]


def test_an_answered_prediction_is_already_in_the_log(model_dir: Path, tmp_path: Path) -> None:
    """The 2xx comes after the record's write(2): each answered request id is readable from the
    segment file while the server still runs (on main it waited for a 1 s flush)."""
    config = ServeConfig(log_dir=tmp_path)
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        for i in range(3):
            r = c.post("/invocations", json={"instances": [ROW] * (i + 1)})
            assert r.status_code == 200
            table = read_predictions(tmp_path)
            assert table.column("request_id").to_pylist()[-1] == r.headers["x-request-id"]
            assert table.num_rows == i + 1
        rid = r.headers["x-request-id"]
        r = c.post("/v1/feedback", json={"request_id": rid, "label": [1, 0, 1]})
        assert r.json() == {"accepted": 1}
        assert read_feedback(tmp_path).column("label").to_pylist() == ["[1,0,1]"]


def test_concurrent_requests_share_a_write(model_dir: Path, tmp_path: Path) -> None:
    """Group commit: 32 concurrent requests are written in fewer record batches than requests,
    and every one of them is logged."""
    import asyncio

    import pyarrow as pa
    import pyarrow.ipc as ipc

    config = ServeConfig(log_dir=tmp_path, batching=False)
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:

        async def burst() -> list[Any]:
            return await asyncio.gather(
                *(c._client.post("/invocations", json={"instances": [ROW]}) for _ in range(32))
            )

        answers = c.loop.run_until_complete(burst())
        assert [r.status_code for r in answers] == [200] * 32
    table = read_predictions(tmp_path)
    assert sorted(table.column("request_id").to_pylist()) == sorted(
        r.headers["x-request-id"] for r in answers
    )
    (segment,) = (tmp_path / "predictions").glob("*.arrows")
    with pa.memory_map(str(segment)) as source:
        batches = list(ipc.open_stream(source))
    assert len(batches) < 32


def test_a_label_that_cannot_be_logged_is_refused_alone(model_dir: Path, tmp_path: Path) -> None:
    """On main one deeply nested label, accepted with 200 among 100 others, made the writer drop
    the whole batch: 27 of the 100 acknowledged labels survived."""
    import asyncio

    config = ServeConfig(log_dir=tmp_path)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:

        async def burst() -> list[Any]:
            bodies = [{"request_id": f"r{i}", "label": i % 2} for i in range(100)]
            bodies.insert(50, {"request_id": "bad", "label": deep})
            bodies.insert(20, {"request_id": "odd", "label": {"y": [[1]]}})
            return await asyncio.gather(*(c._client.post("/v1/feedback", json=b) for b in bodies))

        answers = c.loop.run_until_complete(burst())
    statuses = [r.status_code for r in answers]
    assert statuses.pop(51) == 400  # over the JSON depth cap: refused before it is parsed
    assert statuses.pop(20) == 422  # not one value per row
    assert statuses == [200] * 100
    labels = read_feedback(tmp_path)
    assert sorted(labels.column("request_id").to_pylist()) == sorted(f"r{i}" for i in range(100))


def test_a_label_must_match_its_prediction(model_dir: Path, tmp_path: Path) -> None:
    """One value per predicted row (on main a mismatch got 200 and was ignored by the monitor);
    a feedback batch is kept whole or refused whole."""
    config = ServeConfig(log_dir=tmp_path, max_label_bytes=200, max_batch_rows=10)
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        three = c.post("/invocations", json={"instances": [ROW] * 3}).headers["x-request-id"]
        one = c.post("/invocations", json={"instances": [ROW]}).headers["x-request-id"]

        def status(label: Any, rid: str = three) -> int:
            r = c.post("/v1/feedback", json={"request_id": rid, "label": label})
            return int(r.status_code)

        assert status(1) == 422
        assert status([1, 0]) == 422
        assert status([1, 0, 1, 1]) == 422
        assert status([[1], [0], [1]]) == 422
        assert status({"y": [1, 0, 1]}) == 422
        assert status([1, 0, 1]) == 200
        assert status(["yes", None, 2.5]) == 200
        assert status(1, one) == 200
        assert status([0], one) == 200
        assert status([0, 1], one) == 422
        # Not a prediction this server remembers: the form and size are still checked.
        assert status([1] * 5, "elsewhere") == 200
        assert status([1] * 11, "elsewhere") == 422
        assert status([], "elsewhere") == 422
        r = c.post("/v1/feedback", json={"request_id": "elsewhere", "label": "x" * 300})
        assert r.status_code == 422
        assert "over the limit of 200 bytes" in r.json()["error"]
        batch = [{"request_id": three, "label": [1, 1, 1]}, {"request_id": one, "label": [1, 1]}]
        r = c.post("/v1/feedback", json=batch)
        assert r.status_code == 422
        assert r.json()["error"] == "feedback[1].label has 2 values but the prediction has 1 rows"
    assert read_feedback(tmp_path).num_rows == 5


def test_a_label_is_checked_against_any_logged_prediction(model_dir: Path, tmp_path: Path) -> None:
    """Past the worker's memory (2 predictions here) and after a restart (a new server, nothing
    remembered), a label is still checked against its prediction's rows, read from the log's
    rows index; on main both got 200 whatever their shape."""
    config = ServeConfig(log_dir=tmp_path, label_memory=2)

    def label(c: AppClient, rid: str, value: Any) -> Any:
        return c.post("/v1/feedback", json={"request_id": rid, "label": value})

    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        old = c.post("/invocations", json={"instances": [ROW] * 3}).headers["x-request-id"]
        for _ in range(3):
            assert c.post("/invocations", json={"instances": [ROW]}).status_code == 200
        assert c.app.recent_rows.get(old) is None  # forgotten by the worker
        assert label(c, old, [1, 0]).status_code == 422
        assert label(c, old, [1, 0, 1]).status_code == 200
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        r = label(c, old, 1)
        assert r.status_code == 422
        assert r.json()["error"] == (
            "feedback[0].label: the prediction has 3 rows; send a list of 3 labels"
        )
        assert label(c, old, [0, 0, 1]).status_code == 200
        assert label(c, "never-logged", [1] * 5).status_code == 200  # form and size only
    assert read_feedback(tmp_path).num_rows == 3


def test_the_rows_index_survives_a_torn_line(tmp_path: Path) -> None:
    """An index line cut short (a kill mid-write) is not read as an entry; the complete lines
    before it are, and an id that was never logged (or could not be: not printable ASCII) has
    no rows."""
    from modelyard.serving.predlog import PREDICTIONS, SegmentLog, logged_rows

    log = SegmentLog(tmp_path, PREDICTIONS, segment_bytes=1 << 20, segment_seconds=60)
    log.put_many([("a", 0, "m", "1", "v2", [[1.0]] * n, [0] * n, 0.001, n) for n in (1, 2)])
    log.put(("b", 0, "m", "1", "v2", [[1.0]] * 4, [0] * 4, 0.001, 4))
    log.put(("a", 0, "m", "1", "v2", [[1.0]] * 7, [0] * 7, 0.001, 7))  # an id sent again
    (index,) = (tmp_path / PREDICTIONS / "rows").iterdir()
    with index.open("ab") as fh:
        fh.write(b"c\t12")  # no newline: the kill came first
    assert [logged_rows(tmp_path, rid) for rid in ("a", "b", "c", "d", "a\t1")] == [
        7,
        4,
        None,
        None,
        None,
    ]
    log.close()
    assert read_predictions(tmp_path).column("rows").to_pylist() == [1, 2, 4, 7]


def test_a_label_lookup_reads_a_bounded_part_of_the_rows_index(tmp_path: Path) -> None:
    """A label for an unknown request id costs at most ``max_bytes`` of index reading (newest
    files first), however long the log's history: an older prediction beyond it is not found."""
    from modelyard.serving.predlog import PREDICTIONS, ROWS_INDEX, logged_rows

    index = tmp_path / PREDICTIONS / ROWS_INDEX
    index.mkdir(parents=True)
    (index / "predictions-1.tsv").write_bytes(b"\nold\t3\n" + b"\nx\t1\n" * 1000)
    (index / "predictions-2.tsv").write_bytes(b"\nnew\t5\n" + b"\ny\t1\n" * 1000)
    newest = (index / "predictions-2.tsv").stat().st_size
    assert logged_rows(tmp_path, "new", max_bytes=1) == 5
    assert logged_rows(tmp_path, "old", max_bytes=newest) is None  # beyond the look-back
    assert logged_rows(tmp_path, "old", max_bytes=newest + 1) == 3


def test_only_the_newest_predictions_are_remembered() -> None:
    from modelyard.serving.labels import RecentRows

    rows = RecentRows(2)
    for i in range(3):
        rows.add(f"r{i}", i + 1)
    assert (rows.get("r0"), rows.get("r1"), rows.get("r2"), len(rows)) == (None, 2, 3, 2)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "a",
                    "b",
                    "c",
                    "city",
                    "inputs",
                    "name",
                    "shape",
                    "datatype",
                    "data",
                    "instances",
                    "dataframe_split",
                    "columns",
                    "dataframe_records",
                    "id",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values)
def test_random_json_never_500(client: AppClient, body: Any) -> None:
    for path in ("/v2/models/churn/infer", "/invocations"):
        assert client.post(path, json=body).status_code < 500


def test_tensor_model_shape_checks(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).normal(size=(40, 3))
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, x[:, 0] > 0)
    save_model(model, tmp_path / "rf", input_example=x[:2])
    with AppClient(
        create_app(
            tmp_path / "rf", name="rf", version="1", config=ServeConfig(log_dir=tmp_path / "log")
        )
    ) as c:
        ok = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "data": x[:2].ravel().tolist(),
                }
            ]
        }
        assert c.post("/v2/models/rf/infer", json=ok).json()["outputs"][0]["shape"] == [2]
        bad = {
            "inputs": [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}
            ]
        }
        r = c.post("/v2/models/rf/infer", json=bad)
        assert r.status_code == 422
        assert "shape" in r.text
        assert c.post("/invocations", json={"instances": x[:4].tolist()}).status_code == 200
        # 70 dimensions of size 1: as many values as declared, more axes than numpy allows.
        deep = {"inputs": [{"name": "input-0", "shape": [1] * 70, "datatype": "FP64", "data": [1]}]}
        r = c.post("/v2/models/rf/infer", json=deep)
        assert r.status_code == 422
        assert "70 dimensions, expected 2" in r.json()["error"]


def test_serving_imports_nothing_from_the_platform() -> None:
    code = (
        "import sys\n"
        "from modelyard.serving import create_app, serve\n"
        "import modelyard.serving.__main__\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'click', 'rich', 'alembic', 'docker', 'pandas', 'sklearn', 'pyarrow',"
        " 'grpc', 'google'})\n"
        "bad += [m for m in sys.modules if m.startswith(('modelyard.store', 'modelyard.cli'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("dtype", "value"), [("int64", 2.0**63), ("uint64", 2.0**64), ("int32", 2.0**31)]
)
def test_float_just_past_an_integer_range_is_refused(dtype: str, value: float) -> None:
    """2**63 as a float equals float(iinfo(int64).max): an inclusive check let it wrap."""
    from modelyard.errors import InvalidInput
    from modelyard.flavors.meta import ColumnSpec
    from modelyard.serving.decode import convert

    with pytest.raises(InvalidInput, match="range"):
        convert([value], ColumnSpec("a", dtype), "a", allow_nan=False)
    assert convert([float(2**31 - 1)], ColumnSpec("a", "int64"), "a", False)[0] == 2**31 - 1


def test_a_failed_write_refuses_its_requests_and_is_counted(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full: the request whose record could not be written gets 503 (never a 2xx), the
    drop is counted, and the next write opens a fresh segment."""
    from modelyard.serving.predlog import SegmentLog

    opened = SegmentLog._open_segment

    def disk_full(self: SegmentLog) -> None:
        raise OSError(28, "No space left on device")

    config = ServeConfig(log_dir=tmp_path)
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:
        assert c.post("/invocations", json={"instances": [ROW]}).status_code == 200
        c.app.predlog._close_segment()  # the next write opens a segment: make that fail
        monkeypatch.setattr(SegmentLog, "_open_segment", disk_full)
        r = c.post("/invocations", json={"instances": [ROW]})
        assert r.status_code == 503
        assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "No space left on device" in r.json()["message"]
        assert c.post("/v1/feedback", json={"request_id": "r1", "label": 1}).status_code == 503
        monkeypatch.setattr(SegmentLog, "_open_segment", opened)
        assert c.post("/invocations", json={"instances": [ROW]}).status_code == 200
        text = c.get("/metrics").text
        assert 'modelyard_predlog_dropped_total{log="predictions"} 1.0' in text
        assert 'modelyard_predlog_dropped_total{log="feedback"} 1.0' in text
    assert read_predictions(tmp_path).num_rows == 2


def test_a_record_that_cannot_be_serialised_is_refused_at_its_request(tmp_path: Path) -> None:
    from modelyard.errors import InvalidInput
    from modelyard.serving.predlog import PREDICTIONS, SegmentLog

    log = SegmentLog(tmp_path, PREDICTIONS, segment_bytes=1 << 20, segment_seconds=60)
    log.start()
    good = ("r1", 0, "m", "1", "v2", {"a": [1.0]}, np.array([1]), 0.001, 1)
    with pytest.raises(InvalidInput, match="outputs cannot be logged"):
        log.encode(("r2", 0, "m", "1", "v2", {"a": [1.0]}, object(), 0.001, 1))
    with pytest.raises(InvalidInput):
        log.put_many([good, ("r3", 0, "m", "1", "v2", {"a": [1.0]}, {1j}, 0.001, 1)])
    assert log.put(good)
    log.close()
    log.close()
    assert read_predictions(tmp_path).column("outputs").to_pylist() == ["[1]"]


def test_close_writes_a_pending_batch_once(tmp_path: Path) -> None:
    """A batch still waiting for its write when the log closes is written by close(), once;
    the write scheduled for it then finds nothing to do, and later commits are refused."""
    import asyncio

    from modelyard.errors import LogWriteError
    from modelyard.serving.predlog import FEEDBACK, SegmentLog

    log = SegmentLog(tmp_path, FEEDBACK, segment_bytes=1 << 20, segment_seconds=60)
    log.start()

    async def scenario() -> None:
        waiting = asyncio.ensure_future(log.commit([log.encode(("r1", 0, "m", "1", 1))]))
        await asyncio.sleep(0)  # the commit joined a batch, whose write is scheduled
        assert log.depth == 1
        log.close()
        await waiting
        with pytest.raises(LogWriteError, match="closed"):
            await log.commit([log.encode(("r2", 0, "m", "1", 1))])

    asyncio.run(scenario())
    assert read_feedback(tmp_path).column("request_id").to_pylist() == ["r1"]


@pytest.fixture(scope="module")
def numeric_frame_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline fitted on a DataFrame of four named float columns (a DataFrame signature of
    one dtype: requests of plain numbers are read as one block)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(80, 4)), columns=["w", "x", "y", "z"])
    model = make_pipeline(StandardScaler(), LogisticRegression())
    model.fit(frame, (frame["w"] - frame["z"] > 0).astype(int))
    path = tmp_path_factory.mktemp("numeric") / "model"
    save_model(model, path, input_example=frame[:3])
    return path


def test_rows_of_numbers_are_one_block_with_the_same_answers_and_refusals(
    numeric_frame_model: Path, tmp_path: Path
) -> None:
    """Every MLflow spelling of the same rows gets the same predictions and is logged as the
    same columns, whether it is read as one block (plain numbers) or column by column (a
    ``true``, a ``null``, a string in the body); what the column path refuses, the block path
    refuses with the same message."""
    import warnings

    rows = [[0.5, -1.0, 2.0, 1.5], [-2.0, 0.25, 0.0, -0.5], [1, 2, 3, 4]]
    names = ["w", "x", "y", "z"]
    records = [dict(zip(names, r, strict=True)) for r in rows]
    shuffled = ["z", "w", "y", "x"]
    split = {"columns": shuffled, "data": [[r[3], r[0], r[2], r[1]] for r in rows]}
    bodies = [
        {"dataframe_split": {"columns": names, "data": rows}},
        {"dataframe_split": split},
        {"dataframe_records": records},
        {"instances": rows},
        {"inputs": records},
        {"inputs": dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))},
    ]
    config = ServeConfig(log_dir=tmp_path, batching=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a frame without its column names would warn
        with AppClient(create_app(numeric_frame_model, name="n", version="1", config=config)) as c:
            answers = [c.post("/invocations", json=b) for b in bodies]
            assert [a.status_code for a in answers] == [200] * len(bodies), answers[0].text
            assert len({a.text for a in answers}) == 1
            decoder = c.app.decoder
            assert [decoder.mlflow(b, booleans=False).columns for b in bodies[:5]] == [
                ("w", "x", "y", "z")
            ] * 5  # one block each (the column object goes column by column)
            assert decoder.mlflow(bodies[1]).columns is None  # may hold booleans: by column
            # The same request with a string in it (a column path): the same refusal as before.
            for bad, message in [
                ("0.5, true, 2.0, 1.5", "column 'x': expected float64 numbers, got booleans"),
                ('0.5, "1", 2.0, 1.5', "column 'x': expected float64 numbers, got strings"),
                ("0.5, null, 2.0, 1.5", "column 'x': NaN, null or Infinity is not allowed"),
                ("0.5, 1.0, 2.0", "row 0 must be a list of 4 values"),
            ]:
                body = '{"dataframe_split": {"columns": ["w", "x", "y", "z"], "data": [[%s]]}}'
                r = c.post(
                    "/invocations",
                    content=(body % bad).encode(),
                    headers={"content-type": "application/json"},
                )
                assert r.status_code == 400, r.text
                assert r.json()["message"] == message
            r = c.post("/invocations", json={"dataframe_records": [{**records[0], "v": 1.0}]})
            assert r.json()["message"] == "record 0: unknown column 'v'"
            r = c.post(
                "/invocations",
                json={"dataframe_split": {"columns": [*names[:3], "v"], "data": rows}},
            )
            assert r.json()["message"] == "missing column 'z'"
    logged = read_predictions(tmp_path).column("inputs").to_pylist()[: len(bodies)]
    assert len(set(logged)) == 1
    assert logged[0].startswith('{"w":[0.5,-2.0,1.0],"x":[-1.0,0.25,2.0]')
