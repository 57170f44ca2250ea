"""The model server against the clients users already run, at their defaults: tritonclient
(HTTP, whose default ``infer`` is the binary tensor extension, and gRPC), KServe's
``InferenceRESTClient``/``InferenceGRPCClient`` (in a venv of their own: kserve pins pandas < 3)
and MLflow's scoring-server client. Each server is a real ``python -m modelyard.serving``
process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.flavors import save_model
from modelyard.serving import read_predictions

sys.path.insert(0, str(Path(__file__).parent))
from _client_venvs import client_python
from _models import Mixed, Slow, churn_pipeline, mixed_inputs
from conftest_remote import free_port

pytestmark = pytest.mark.filterwarnings(
    # tritonclient's HTTP client is gevent-based; gevent warns about monkey-patching late
    "ignore::gevent.monkey.MonkeyPatchWarning"
)

OWN_CODE = ("--allow-pickle",)  # the python test models are this suite's own code


@dataclass
class Served:
    url: str
    grpc: str
    log_dir: Path
    proc: subprocess.Popen[bytes]
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def start(model_dir: Path, name: str, folder: Path, *args: str) -> Served:
    port, grpc_port = free_port(), free_port()
    output = folder / f"{name}.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "modelyard.serving", "--model-dir", str(model_dir)),
                *("--name", name, "--version", "2", "--host", "127.0.0.1", "--port", str(port)),
                *("--grpc-port", str(grpc_port), "--log-dir", str(folder / f"{name}-log")),
                *("--log-level", "warning", *args),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(
        f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", folder / f"{name}-log", proc, output
    )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, served.log()
        try:
            if httpx.get(f"{served.url}/v2/health/ready", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the model server did not become ready"
        time.sleep(0.05)


def stop(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(timeout=30)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
    assert "Traceback" not in served.log(), served.log()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="module")
def mixed(folder: Path) -> Iterator[Served]:
    save_model(Mixed(), folder / "mixed-model", input_example=mixed_inputs())
    served = start(folder / "mixed-model", "mixed", folder, *OWN_CODE)
    yield served
    stop(served)


@pytest.fixture(scope="module")
def churn(folder: Path) -> Iterator[Served]:
    model, frame = churn_pipeline()
    save_model(model, folder / "churn-model", input_example=frame[:5])
    served = start(folder / "churn-model", "churn", folder)
    yield served
    stop(served)


def expected(inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(Mixed().predict(inputs))


def assert_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        if value.dtype == object:
            assert [v.decode() if isinstance(v, bytes) else v for v in got[name]] == list(value)
        else:
            assert got[name].dtype == value.dtype, name
            np.testing.assert_array_equal(got[name], value)


# ---- tritonclient over HTTP ----------------------------------------------------------------


def triton_http_inputs(inputs: dict[str, Any], binary: bool = True) -> list[Any]:
    import tritonclient.http as th
    from tritonclient.utils import np_to_triton_dtype

    out = []
    for name, value in inputs.items():
        tensor = th.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value, binary_data=binary)
        out.append(tensor)
    return out


def test_tritonclient_http_default_infer_is_binary_both_ways(mixed: Served) -> None:
    import tritonclient.http as th

    inputs = mixed_inputs(5, seed=1)
    client = th.InferenceServerClient(mixed.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_model_ready("mixed", "2")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        result = client.infer("mixed", triton_http_inputs(inputs), request_id="req-1")
        header = result.get_response()
        assert header["id"] == "req-1"
        assert all(
            "data" not in o and o["parameters"]["binary_data_size"] > 0 for o in header["outputs"]
        )
        assert_outputs(
            {o["name"]: result.as_numpy(o["name"]) for o in header["outputs"]}, expected(inputs)
        )
    finally:
        client.close()


def test_tritonclient_http_requested_outputs_json_and_binary(mixed: Served) -> None:
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    inputs = mixed_inputs(3, seed=2)
    want = expected(inputs)
    client = th.InferenceServerClient(mixed.url.removeprefix("http://"))
    try:
        outputs = [
            th.InferRequestedOutput("label", binary_data=False),
            th.InferRequestedOutput("score", binary_data=True),
        ]
        result = client.infer("mixed", triton_http_inputs(inputs, binary=False), outputs=outputs)
        header = result.get_response()
        assert [o["name"] for o in header["outputs"]] == ["label", "score"]
        assert header["outputs"][0]["data"] == list(want["label"])
        assert header["outputs"][0]["datatype"] == "BYTES"
        assert header["outputs"][1]["parameters"] == {"binary_data_size": 12}
        np.testing.assert_array_equal(result.as_numpy("score"), want["score"])
        assert result.as_numpy("flag") is None
        with pytest.raises(InferenceServerException, match="unknown output 'nope'") as info:
            client.infer(
                "mixed", triton_http_inputs(inputs), outputs=[th.InferRequestedOutput("nope")]
            )
        assert info.value.status() == "400"
    finally:
        client.close()


def test_tritonclient_http_binary_columns_model(churn: Served) -> None:
    """A model of named columns takes one binary tensor per column, strings as BYTES."""
    import tritonclient.http as th

    model, frame = churn_pipeline()
    rows = frame[:4]
    inputs = {c: rows[c].to_numpy() for c in ("a", "b", "c")}
    inputs["city"] = rows["city"].to_numpy(dtype=object)
    client = th.InferenceServerClient(churn.url.removeprefix("http://"))
    try:
        result = client.infer("churn", triton_http_inputs(inputs))
        np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(rows))
    finally:
        client.close()


def post_binary(url: str, header: dict[str, Any], binary: bytes, **headers: str) -> httpx.Response:
    head = json.dumps(header).encode()
    return httpx.post(
        url,
        content=head + binary,
        headers={"Inference-Header-Content-Length": str(len(head)), **headers},
    )


def one_input(datatype: str, shape: list[int], size: int, name: str = "x") -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "parameters": {"binary_data_size": size},
            }
        ]
    }


@pytest.mark.parametrize(
    ("header", "binary", "needle"),
    [
        (one_input("FP32", [1, 3], 12), b"\0" * 11, "runs past the end"),
        (one_input("FP32", [1, 3], 8), b"\0" * 8, "needs 12 bytes"),
        (one_input("FP32", [1, 3], 12), b"\0" * 13, "belong to no input"),
        (one_input("BF16", [1, 3], 6), b"\0" * 6, "not supported"),
        (one_input("BOOL", [1, 1], 1, "on"), b"\x02", "0 or 1"),
        (one_input("BYTES", [1, 1], 6, "tag"), b"\x05\0\0\0ab", "cut short"),
        (one_input("BYTES", [1, 1], 10, "tag"), b"\x01\0\0\0a\x01\0\0\0b", "after the 1 BYTES"),
        (
            {
                **one_input("FP32", [1, 3], 12),
                "outputs": [{"name": "score", "parameters": {"classification": 2}}],
            },
            b"\0" * 12,
            "classification",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1, 3],
                        "parameters": {"shared_memory_region": "r"},
                    }
                ]
            },
            b"",
            "shared memory",
        ),
        ({"inputs": [], "parameters": {"binary_data_output": "yes"}}, b"", "binary_data_output"),
    ],
)
def test_broken_binary_requests_are_400(
    mixed: Served, header: dict[str, Any], binary: bytes, needle: str
) -> None:
    r = post_binary(f"{mixed.url}/v2/models/mixed/infer", header, binary)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_binary_header_length_and_content_types(mixed: Served) -> None:
    url = f"{mixed.url}/v2/models/mixed/infer"
    r = httpx.post(url, content=b"{}", headers={"Inference-Header-Content-Length": "3"})
    assert r.status_code == 400
    assert "Inference-Header-Content-Length" in r.text
    r = httpx.post(url, content=b"\x80\x04", headers={"content-type": "application/x-pickle"})
    assert r.status_code == 415
    # Non-UTF-8 text is refused by the signature check (422), the server stays up.
    r = post_binary(url, one_input("BYTES", [1, 1], 5, "tag"), b"\x01\0\0\0\xff")
    assert r.status_code == 422
    assert "UTF-8" in r.text
    # The extension's own content type, and JSON sent as octet-stream, both work.
    inputs = mixed_inputs(1)
    body = {
        "inputs": [
            {"name": n, "datatype": d, "shape": list(v.shape), "data": v.ravel().tolist()}
            for (n, v), d in zip(inputs.items(), ["FP32", "INT8", "BYTES", "BOOL"], strict=True)
        ]
    }
    for ctype in ("application/octet-stream", "application/json"):
        r = httpx.post(url, content=json.dumps(body), headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"


# ---- tritonclient over gRPC ----------------------------------------------------------------


def triton_grpc_inputs(inputs: dict[str, Any]) -> list[Any]:
    import tritonclient.grpc as tg
    from tritonclient.utils import np_to_triton_dtype

    out = []
    for name, value in inputs.items():
        tensor = tg.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        out.append(tensor)
    return out


def test_tritonclient_grpc_health_metadata_and_infer(mixed: Served) -> None:
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    inputs = mixed_inputs(4, seed=3)
    client = tg.InferenceServerClient(mixed.grpc)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("mixed")
        assert client.is_model_ready("mixed", "2")
        meta = client.get_server_metadata(as_json=True)
        assert meta["name"] == "modelyard"
        assert meta["extensions"] == ["binary_tensor_data"]
        model = client.get_model_metadata("mixed", as_json=True)
        assert model["versions"] == ["2"]
        assert model["platform"] == "python"
        assert [(i["name"], i["datatype"], i["shape"]) for i in model["inputs"]] == [
            ("x", "FP32", ["-1", "3"]),
            ("k", "INT8", ["-1", "2"]),
            ("tag", "BYTES", ["-1", "1"]),
            ("on", "BOOL", ["-1", "1"]),
        ]
        result = client.infer("mixed", triton_grpc_inputs(inputs), request_id="g-1")
        response = result.get_response(as_json=True)
        assert response["id"] == "g-1"
        assert response["model_version"] == "2"
        assert_outputs(
            {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}, expected(inputs)
        )
        # Requested outputs: only those, in that order.
        result = client.infer(
            "mixed",
            triton_grpc_inputs(inputs),
            outputs=[tg.InferRequestedOutput("count"), tg.InferRequestedOutput("flag")],
        )
        assert [o["name"] for o in result.get_response(as_json=True)["outputs"]] == [
            "count",
            "flag",
        ]
        np.testing.assert_array_equal(result.as_numpy("count"), expected(inputs)["count"])
        errors = {
            "unknown output": dict(outputs=[tg.InferRequestedOutput("nope")]),
            "unknown model": dict(model_name="other"),
            "unknown version": dict(model_version="9"),
        }
        for needle, kwargs in errors.items():
            call = {"model_name": "mixed", "inputs": triton_grpc_inputs(inputs), **kwargs}
            with pytest.raises(InferenceServerException, match=needle) as info:
                client.infer(**call)
            code = (
                "StatusCode.NOT_FOUND"
                if "model" in needle or "version" in needle
                else "StatusCode.INVALID_ARGUMENT"
            )
            assert info.value.status() == code, needle
        bad = tg.InferInput("x", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        bad.set_shape([2, 3])  # claims 2 rows, sends 1
        with pytest.raises(InferenceServerException, match="needs 24 bytes") as info:
            client.infer("mixed", [bad, *triton_grpc_inputs(inputs)[1:]])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert client.is_server_ready()
    finally:
        client.close()
    metrics = httpx.get(f"{mixed.url}/metrics").text
    assert 'route="grpc:ModelInfer",status="200"' in metrics
    assert 'route="grpc:ModelInfer",status="400"' in metrics


def _fields(message: Any) -> dict[str, Any]:
    """A message's wire shape: each field's number, type, repeatedness and, for messages,
    the same recursively (maps are nested entry messages)."""
    return {
        f.name: (
            f.number,
            f.type,
            f.is_repeated,
            _fields(f.message_type) if f.message_type is not None else None,
        )
        for f in message.fields
    }


def test_proto_matches_the_protocol_triton_clients_speak() -> None:
    from tritonclient.grpc import service_pb2 as triton

    from modelyard.serving._proto import grpc_predict_v2_pb2 as ours
    from modelyard.serving.grpc_server import SERVICE

    service = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == SERVICE
    served = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata"]
    for method in [*served, "ModelInfer"]:
        theirs = service.methods_by_name[method]
        for side in (theirs.input_type, theirs.output_type):
            mine = ours.DESCRIPTOR.message_types_by_name[side.name]
            assert _fields(mine) == _fields(side), side.name


def test_grpc_contents_instead_of_raw(churn: Served) -> None:
    """Inputs as typed ``contents`` (what clients without the raw form send) through the
    protocol's own generated stub."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    model, frame = churn_pipeline()
    rows = frame[:3]
    request = service_pb2.ModelInferRequest(model_name="churn", id="contents-1")
    for name in ("a", "b", "c"):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[3])
        tensor.contents.fp64_contents.extend(rows[name].tolist())
    city = request.inputs.add(name="city", datatype="BYTES", shape=[3, 1])
    city.contents.bytes_contents.extend(v.encode() for v in rows["city"])
    with grpc.insecure_channel(churn.grpc) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("predict", "INT64", [3])
    got = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    np.testing.assert_array_equal(got, model.predict(rows))


def test_grpc_needs_the_same_predict_token_as_http(folder: Path, tmp_path: Path) -> None:
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    from conftest_remote import start_server
    from modelyard.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "team", environ={})
    team = start_server(ws)
    _, predict = ws.store.tokens.create("svc", "predict")
    _, read = ws.store.tokens.create("viewer", "read")
    save_model(Mixed(), tmp_path / "model", input_example=mixed_inputs())
    served = start(tmp_path / "model", "mixed", tmp_path, "--auth-url", team.url, *OWN_CODE)
    inputs = mixed_inputs(1)
    try:
        with tg.InferenceServerClient(served.grpc) as client:
            assert client.is_server_ready()  # health and metadata stay open
            assert client.get_model_metadata("mixed").name == "mixed"
            for headers, code in (
                (None, "StatusCode.UNAUTHENTICATED"),
                ({"authorization": "Bearer not-a-token"}, "StatusCode.UNAUTHENTICATED"),
                ({"authorization": f"Bearer {read}"}, "StatusCode.PERMISSION_DENIED"),
            ):
                with pytest.raises(InferenceServerException) as info:
                    client.infer("mixed", triton_grpc_inputs(inputs), headers=headers)
                assert info.value.status() == code, headers
                assert predict not in str(info.value)
            result = client.infer(
                "mixed", triton_grpc_inputs(inputs), headers={"authorization": f"Bearer {predict}"}
            )
            np.testing.assert_array_equal(result.as_numpy("score"), expected(inputs)["score"])
    finally:
        stop(served)
        team.stop()
        ws.close()


def test_grpc_requests_share_the_micro_batcher(tmp_path: Path) -> None:
    import tritonclient.grpc as tg

    save_model(Slow(), tmp_path / "model", input_example=np.zeros((2, 3)))
    served = start(tmp_path / "model", "slow", tmp_path, *OWN_CODE)
    rows = [np.full((1, 3), i, dtype=np.float64) for i in range(12)]
    try:
        with tg.InferenceServerClient(served.grpc) as client:
            done: list[Any] = []

            def infer(i: int) -> Any:
                tensor = tg.InferInput("input-0", [1, 3], "FP64")
                tensor.set_data_from_numpy(rows[i])
                return client.async_infer(
                    "slow", [tensor], callback=lambda result, error: done.append((i, result, error))
                )

            for i in range(12):
                infer(i)
            deadline = time.monotonic() + 30
            while len(done) < 12:
                assert time.monotonic() < deadline, done
                time.sleep(0.01)
        for i, result, error in done:
            assert error is None, error
            assert result.as_numpy("predict").tolist() == [3.0 * i]
        metrics = httpx.get(f"{served.url}/metrics").text
    finally:
        stop(served)
    count = re.search(r"^modelyard_batch_requests_count(?:\{[^}]*\})? (\S+)", metrics, re.M)
    total = re.search(r"^modelyard_batch_requests_sum(?:\{[^}]*\})? (\S+)", metrics, re.M)
    assert count, metrics
    assert total, metrics
    # 12 requests (+ none from the warm-up, which bypasses the batcher) in fewer predict calls.
    assert float(total.group(1)) == 12
    assert float(count.group(1)) < 12


@pytest.mark.slow
def test_grpc_with_several_workers_shares_the_port(
    churn: Served, folder: Path, tmp_path: Path
) -> None:
    """Each worker serves gRPC on the one port (SO_REUSEPORT); /metrics counts them all."""
    import tritonclient.grpc as tg

    model, frame = churn_pipeline()
    served = start(folder / "churn-model", "churn", tmp_path, "--workers", "2")  # churn's model
    inputs = {c: frame[c].to_numpy()[:1] for c in ("a", "b", "c")}
    inputs["city"] = frame["city"].to_numpy(dtype=object)[:1]
    try:
        for _ in range(12):  # a new connection each time: the kernel spreads them
            with tg.InferenceServerClient(served.grpc) as client:
                result = client.infer("churn", triton_grpc_inputs(inputs))
            np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(frame[:1]))
        metrics = httpx.get(f"{served.url}/metrics").text
    finally:
        stop(served)
    assert 'modelyard_requests_total{route="grpc:ModelInfer",status="200"} 12.0' in metrics


def test_grpc_and_http_share_the_prediction_log(churn: Served) -> None:
    import tritonclient.grpc as tg

    _, frame = churn_pipeline()
    inputs = {c: frame[c].to_numpy()[:2] for c in ("a", "b", "c")}
    inputs["city"] = frame["city"].to_numpy(dtype=object)[:2]
    with tg.InferenceServerClient(churn.grpc) as client:
        client.infer("churn", triton_grpc_inputs(inputs), request_id="logged-grpc")
    # Written before the answer: in the log as soon as the call returns, no waiting.
    table = read_predictions(churn.log_dir)
    ids = table.column("request_id").to_pylist()
    row = ids.index("logged-grpc")
    assert table.column("endpoint").to_pylist()[row] == "grpc"


# ---- MLflow's scoring-server client --------------------------------------------------------


# mlflow warns about its own type hints while it is imported
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_mlflow_scoring_client(churn: Served) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    import modelyard

    model, frame = churn_pipeline()
    host, port = churn.url.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=10)
    client.ping()
    assert client.get_version() == modelyard.__version__
    result = client.invoke(frame[:6])
    np.testing.assert_array_equal(
        np.asarray(result.get_predictions()).ravel(), model.predict(frame[:6])
    )
    with pytest.raises(Exception, match="error code 400.*INVALID_PARAMETER_VALUE.*'city'"):
        client.invoke(frame[["a", "b", "c"]][:2])


@pytest.mark.parametrize(
    ("content", "ctype", "status", "body"),
    [
        (b"{not json", "application/json", 400, "BAD_REQUEST"),
        (b'{"dataframe_records": [{"a": 1}]}', "application/json", 400, "INVALID_PARAMETER_VALUE"),
        (b'{"nothing": 1}', "application/json", 400, "BAD_REQUEST"),
        (b"a,b\n1,2\n", "text/csv", 400, "INVALID_PARAMETER_VALUE"),
        (b"<x/>", "application/xml", 415, "This predictor only supports"),
        (b"{}", "application/json; charset=latin-1", 415, "only supports UTF-8"),
        (
            b"{}",
            "application/json; format=pandas-split",
            415,
            "Unrecognized content type parameters",
        ),
    ],
)
def test_invocations_errors_as_mlflow_answers_them(
    churn: Served, content: bytes, ctype: str, status: int, body: str
) -> None:
    r = httpx.post(f"{churn.url}/invocations", content=content, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    if status == 415:  # mlflow models serve answers these in plain text
        assert r.headers["content-type"].startswith("text/plain")
        assert body in r.text
    else:
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()) == {"error_code", "message"}
        assert r.json()["error_code"] == body


def test_refusals_before_the_handlers_keep_each_protocols_shape(churn: Served) -> None:
    """The Host allow-list answers before any handler: still MLflow's shape on /invocations."""
    wrong_host = {"host": "elsewhere.example", "content-type": "application/json"}
    r = httpx.post(f"{churn.url}/invocations", content=b"{}", headers=wrong_host)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "BAD_REQUEST"
    assert "Host" in r.json()["message"]
    r = httpx.post(f"{churn.url}/v2/models/churn/infer", content=b"{}", headers=wrong_host)
    assert r.status_code == 400
    assert "Host" in r.json()["error"]


def test_mlflow_health_and_version_routes(churn: Served) -> None:
    import modelyard

    for path in ("/ping", "/health"):
        r = httpx.get(churn.url + path)
        assert (r.status_code, r.text, r.headers["content-type"]) == (200, "\n", "application/json")
    r = httpx.get(churn.url + "/version")
    assert (r.status_code, r.text) == (200, modelyard.__version__)


# ---- KServe's clients (their own venv) -----------------------------------------------------

KSERVE_SCRIPT = r"""
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferenceGRPCClient, InferRequest, InferInput, RESTConfig

url, grpc_url = sys.argv[1], sys.argv[2]
x = np.array([[0.5, 1.0, -2.0], [1.0, 2.0, 3.0]], dtype=np.float32)
k = np.array([[1, 2], [3, -4]], dtype=np.int8)
tag = np.array([["a"], ["b"]], dtype=object)
on = np.array([[True], [False]])

def request(binary):
    inputs = []
    types = {"x": "FP32", "k": "INT8", "tag": "BYTES", "on": "BOOL"}
    for name, value in (("x", x), ("k", k), ("tag", tag), ("on", on)):
        dtype = types[name]
        tensor = InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return InferRequest(model_name="mixed", infer_inputs=inputs, request_id="ks")

def outputs(response):
    return {o.name: o.as_numpy().tolist() for o in response.outputs}

async def main():
    out = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    out["rest_live"] = await rest.is_server_live(url)
    out["rest_ready"] = await rest.is_model_ready(url, "mixed")
    out["rest_json"] = outputs(await rest.infer(url, request(False), model_name="mixed"))
    out["rest_binary"] = outputs(await rest.infer(url, request(True), model_name="mixed"))
    await rest.close()
    grpc = InferenceGRPCClient(grpc_url)
    out["grpc_live"] = (await grpc.is_server_live())
    out["grpc"] = outputs(await grpc.infer(request(False)))
    await grpc.close()
    print(json.dumps(out, default=lambda v: v.decode() if isinstance(v, bytes) else str(v)))

asyncio.run(main())
"""


@pytest.mark.slow
def test_kserve_clients(mixed: Served, folder: Path) -> None:
    python = client_python("kserve")
    script = folder / "kserve_client.py"
    script.write_text(KSERVE_SCRIPT)
    done = subprocess.run(
        [str(python), str(script), mixed.url, mixed.grpc],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    inputs = {
        "x": np.array([[0.5, 1.0, -2.0], [1.0, 2.0, 3.0]], dtype=np.float32),
        "k": np.array([[1, 2], [3, -4]], dtype=np.int8),
        "tag": np.array([["a"], ["b"]], dtype=object),
        "on": np.array([[True], [False]]),
    }
    want = {k: v.tolist() for k, v in expected(inputs).items()}
    assert out["rest_live"] is True
    assert out["rest_ready"] is True
    assert out["grpc_live"] is True
    for way in ("rest_json", "rest_binary", "grpc"):
        got = {
            k: [x.decode() if isinstance(x, bytes) else x for x in v] for k, v in out[way].items()
        }
        assert got == want, way
