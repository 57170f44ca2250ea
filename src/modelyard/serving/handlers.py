"""Request handling: routing, limits, content types, request ids, errors, logging.

Every failure a client can cause ends here as a 4xx JSON answer; a bug or a model that raises
is a 500 with a message — the server keeps serving either way.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelyard._version import __version__
from modelyard.errors import HTTPError, InvalidInput, InvalidRequest, LogWriteError
from modelyard.serving.labels import check_label

if TYPE_CHECKING:
    from modelyard.serving.app import ModelServer, Receive, Scope, Send

logger = logging.getLogger("modelyard.serving")

_PICKLE = (b"pickle",)
_MAX_ID = 200


def _jsonable(arr: np.ndarray[Any, Any]) -> Any:
    if arr.dtype.kind in "biuf" and arr.dtype.name != "float16":
        return np.ascontiguousarray(arr)
    return arr.tolist()


class _Disconnected(Exception):
    pass


def make_request_id(raw: bytes | None) -> str:
    """The client's request id if it is a printable ASCII token of at most 200 bytes, else a
    fresh random one."""
    if raw and len(raw) <= _MAX_ID and all(33 <= b < 127 for b in raw):
        return raw.decode("ascii")
    import os

    return os.urandom(16).hex()


async def _send(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    content_type: bytes = b"application/json",
    close: bool = False,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *extra,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int, content_length: bytes | None) -> bytes:
    """Read at most ``limit`` bytes: a declared length over it is refused before reading, and a
    chunked body is counted as it streams in."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise HTTPError(400, "invalid Content-Length") from None
        if declared > limit:
            raise HTTPError(413, f"body of {declared} bytes is over the limit of {limit}")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _media_type(raw: bytes | None) -> bytes:
    if raw is None:
        return b""
    return raw.split(b";", 1)[0].strip().lower()


def _check_json_type(media: bytes) -> None:
    if any(p in media for p in _PICKLE):
        raise HTTPError(415, "pickle bodies are never accepted")
    if media and media != b"application/json" and not media.endswith(b"+json"):
        raise HTTPError(
            415, f"unsupported content type {media.decode('latin-1')!r}; send application/json"
        )


def _mlflow_media_type(raw: bytes | None) -> bytes:
    """``/invocations`` takes what ``mlflow models serve`` takes: JSON or CSV, in UTF-8, with no
    content-type parameter but ``charset``; anything else is 415."""
    media = _media_type(raw)
    for param in (raw or b"").split(b";")[1:]:
        key, _, value = param.partition(b"=")
        key = key.strip().lower()
        if key != b"charset":
            text = key.decode("latin-1")
            raise HTTPError(415, f"Unrecognized content type parameters: {text}")
        if value.strip().strip(b'"').lower() not in (b"utf-8", b"utf8"):
            raise HTTPError(415, "The scoring server only supports UTF-8")
    if media != b"text/csv":
        try:
            _check_json_type(media)
        except HTTPError as exc:
            got = (raw or b"").decode("latin-1")
            raise HTTPError(
                415,
                "This predictor only supports the following content types: Types: "
                f"['text/csv', 'application/json']. Got '{got}'. ({exc.message})",
            ) from None
    return media


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"Invalid input. invalid JSON: {exc}") from None


def _route(path: str, method: str, server: ModelServer) -> tuple[str, str]:
    """(action, route template) for a path; raises 404/405 for anything else."""
    simple = {
        "/v2/health/live": ("live", "GET"),
        "/v2/health/ready": ("ready", "GET"),
        "/v2": ("server_meta", "GET"),
        "/v2/": ("server_meta", "GET"),
        "/ping": ("ping", "GET"),
        "/health": ("ping", "GET"),
        "/version": ("version", "GET"),
        "/invocations": ("invocations", "POST"),
        "/metrics": ("metrics", "GET"),
        "/v1/feedback": ("feedback", "POST"),
    }
    if path in simple:
        action, allowed = simple[path]
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            raise HTTPError(405, f"{method} is not allowed on {path}")
        return action, path
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models":
        name, rest = parts[2], parts[3:]
        template = "/v2/models/{name}"
        if name != server.name:
            raise HTTPError(404, f"unknown model {name!r}; this server answers {server.name!r}")
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or rest[1] != server.version:
                version = rest[1] if len(rest) > 1 else ""
                raise HTTPError(404, f"unknown version {version!r} of model {name!r}")
            rest = rest[2:]
            template += "/versions/{version}"
        if not rest:
            action, allowed = "model_meta", "GET"
        elif rest == ["ready"]:
            action, allowed = "model_ready", "GET"
        elif rest == ["infer"]:
            action, allowed = "infer", "POST"
        else:
            raise HTTPError(404, f"no route {path}")
        if method != allowed:
            raise HTTPError(405, f"{method} is not allowed on {path}")
        return action, template + ("/" + rest[0] if rest else "")
    raise HTTPError(404, f"no route {path}")


async def handle(server: ModelServer, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    headers = dict(scope["headers"])
    request_id = make_request_id(headers.get(b"x-request-id"))
    path: str = scope["path"]
    method: str = scope["method"]
    metrics = server.metrics
    route = "other"
    status = 500
    if metrics is not None:
        metrics.inflight.inc()
    try:
        try:
            action, route = _route(path, method, server)
            if server.auth is not None:  # None unless --auth-url: no work per request then
                await server.auth.authorize(action, headers)
            status = await _ACTIONS[action](server, headers, request_id, receive, send)
        except HTTPError as exc:
            status = exc.status
            await _error(send, path, status, exc.message, request_id, exc.headers, exc.code)
        except InvalidRequest as exc:
            status = 400
            await _error(send, path, status, exc.message, request_id)
        except InvalidInput as exc:
            # MLflow answers a request that does not fit the signature with 400
            # INVALID_PARAMETER_VALUE; V2 clients get 422, which names it as such.
            # (and a body of no known shape with BAD_REQUEST).
            status = 400 if path == "/invocations" else 422
            code = "BAD_REQUEST" if exc.field == "body" else _INVALID_VALUE
            await _error(send, path, status, exc.message, request_id, (), code)
        except LogWriteError as exc:
            status = 503
            await _error(send, path, status, exc.message, request_id)
        except _Disconnected:
            status = 499
        except Exception as exc:
            logger.exception("request %s failed", request_id)
            status = 500
            await _error(send, path, status, f"internal error: {exc}", request_id)
    finally:
        if metrics is not None:
            metrics.inflight.dec()
            metrics.observe(route, status, time.perf_counter() - started)


#: MLflow's error codes (``mlflow.protos.databricks_pb2.ErrorCode``) for the statuses
#: ``/invocations`` answers, as ``mlflow models serve`` pairs them.
_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
}
_INVALID_VALUE = "INVALID_PARAMETER_VALUE"


def mlflow_error(status: int, message: str, code: str | None = None) -> bytes:
    """The body of an error ``/invocations`` answers: MLflow's ``{"error_code", "message"}``."""
    code = code or _MLFLOW_CODES.get(status, "INTERNAL_ERROR")
    return orjson.dumps({"error_code": code, "message": message})


async def _error(
    send: Send,
    path: str,
    status: int,
    message: str,
    request_id: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    code: str | None = None,
) -> None:
    content_type = b"application/json"
    if path != "/invocations":
        body = orjson.dumps({"error": message})
    elif status == 415:  # MLflow's scoring server answers a content type it refuses in text
        body, content_type = message.encode(), b"text/plain; charset=utf-8"
    else:
        body = mlflow_error(status, message, code)
    await _send(send, status, body, request_id, content_type, close=status == 413, extra=headers)


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


async def _live(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    await _send(send, 200, b'{"live":true}', request_id)
    return 200


async def _ready(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    status = 200 if server.ready else 503
    await _send(send, status, _json({"ready": server.ready}), request_id)
    return status


async def _ping(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    status = 200 if server.ready else 503
    await _send(send, status, b"\n", request_id, content_type=b"application/json")
    return status


async def _version(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    # As `mlflow models serve`: the bare version string (its server says application/json).
    await _send(send, 200, __version__.encode(), request_id)
    return 200


async def _server_meta(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    from modelyard.serving.v2 import EXTENSIONS

    body = {"name": "modelyard", "version": __version__, "extensions": list(EXTENSIONS)}
    await _send(send, 200, _json(body), request_id)
    return 200


def _tensor_meta(spec: Any, kind: str) -> dict[str, Any]:
    shape = list(spec.shape) if spec.shape is not None else [-1]
    return {"name": spec.name, "datatype": spec.v2_datatype, "shape": shape}


async def _model_meta(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    if server.model is None:
        raise HTTPError(503, "the model is still loading")
    meta = server.model.meta
    sig = meta.signature
    body = {
        "name": server.name,
        "versions": [server.version],
        "platform": meta.flavor,
        "inputs": [_tensor_meta(s, sig.kind) for s in sig.inputs],
        "outputs": [_tensor_meta(s, sig.kind) for s in sig.outputs],
        "parameters": {"signature": sig.to_dict()},
    }
    await _send(send, 200, _json(body), request_id)
    return 200


async def _model_ready(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    status = 200 if server.ready else 503
    await _send(send, status, _json({"name": server.name, "ready": server.ready}), request_id)
    return status


async def _metrics(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    if server.metrics is None:
        raise HTTPError(503, "the model is still loading")
    body, content_type = server.metrics.render()
    await _send(send, 200, body, request_id, content_type=content_type.encode())
    return 200


def _require_model(server: ModelServer) -> None:
    if server._predict is None or server.decoder is None:
        raise HTTPError(503, "the model is still loading")


async def _infer(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    from modelyard.serving import v2

    _require_model(server)
    started = time.perf_counter()
    media = _media_type(headers.get(b"content-type"))
    header_length = headers.get(b"inference-header-content-length")
    if media != b"application/octet-stream":  # the binary extension's type, or JSON's
        _check_json_type(media)
    raw = await _read_body(receive, server.config.max_body_bytes, headers.get(b"content-length"))
    if header_length is None:  # all JSON (octet-stream without the header too, as Triton does)
        body = _parse_json(raw)
    else:
        size = _header_length(header_length, len(raw))
        body = _parse_json(raw[:size])
        if isinstance(body, dict):
            v2.attach_binary(body, memoryview(raw)[size:])
    binary = v2.binary_default(body) if isinstance(body, dict) else False
    result = await v2.infer(server, body)
    body_id = body.get("id")
    response_id = body_id if isinstance(body_id, str) and body_id else request_id
    if b"x-request-id" not in headers and response_id != request_id:
        request_id = make_request_id(response_id.encode("utf-8", "replace"))
    outputs = []
    chunks: list[bytes] = []
    for wanted, arr in result.tensors:
        tensor: dict[str, Any] = {
            "name": wanted.name,
            "shape": list(arr.shape),
            "datatype": v2.datatype_of(arr),
        }
        if binary if wanted.binary is None else wanted.binary:
            chunk = v2.encode_raw(arr)
            chunks.append(chunk)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
        else:
            tensor["data"] = _jsonable(arr.ravel())
        outputs.append(tensor)
    payload = _json(
        {
            "model_name": server.name,
            "model_version": server.version,
            "id": response_id,
            "outputs": outputs,
        }
    )
    await log_prediction(
        server, request_id, "v2", result.batch, result.output, started, _variant(server, headers)
    )
    if chunks:
        extra = ((b"inference-header-content-length", str(len(payload)).encode()),)
        payload = b"".join([payload, *chunks])
        await _send(send, 200, payload, request_id, b"application/octet-stream", extra=extra)
    else:
        await _send(send, 200, payload, request_id)
    return 200


def _header_length(raw: bytes, body_size: int) -> int:
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if not 0 <= size <= body_size:
        raise HTTPError(
            400,
            f"Inference-Header-Content-Length must be a byte count within the body's "
            f"{body_size} bytes",
        )
    return size


async def _invocations(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    _require_model(server)
    assert server.decoder is not None
    assert server._predict is not None
    started = time.perf_counter()
    media = _mlflow_media_type(headers.get(b"content-type"))
    if media == b"text/csv":
        raw = await _read_body(
            receive, server.config.max_body_bytes, headers.get(b"content-length")
        )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "the CSV body is not UTF-8") from None
        batch = server.decoder.csv(text)
    else:
        _check_json_type(media)
        raw = await _read_body(
            receive, server.config.max_body_bytes, headers.get(b"content-length")
        )
        body = _parse_json(raw)
        batch = server.decoder.mlflow(body, booleans=b"true" in raw or b"false" in raw)
    output = await server._predict(batch)
    if isinstance(output, dict):
        predictions: Any = {k: _jsonable(v) for k, v in output.items()}
    else:
        predictions = _jsonable(output)
    answer = _json({"predictions": predictions})
    await log_prediction(
        server, request_id, "invocations", batch, output, started, _variant(server, headers)
    )
    await _send(send, 200, answer, request_id)
    return 200


def _variant(server: ModelServer, headers: dict[bytes, bytes]) -> str:
    from modelyard.serving.variants import variant_of

    return variant_of(headers, server.config.variant)


async def log_prediction(
    server: ModelServer,
    request_id: str,
    endpoint: str,
    batch: Any,
    output: Any,
    started: float,
    variant: str | None = None,
) -> None:
    """Write one answered request's record (HTTP and gRPC alike) before its answer is sent (see
    :mod:`modelyard.serving.predlog`): a 2xx is only ever sent for a logged prediction, and a
    record that cannot be logged refuses its request. ``variant``: what it is logged as
    (default: the server's own, :attr:`ServeConfig.variant`)."""
    row = server.predlog.encode(
        (
            request_id,
            time.time_ns(),
            server.name,
            server.version,
            endpoint,
            batch.as_columns(),  # a block is logged as its columns, as every other request
            output,
            time.perf_counter() - started,
            batch.rows,
            variant or server.config.variant,
        )
    )
    await server.predlog.commit((row,))
    server.recent_rows.add(request_id, batch.rows)


async def _rows_of(server: ModelServer, request_id: str) -> int | None:
    """The rows of the logged prediction ``request_id``: from this worker's memory of its
    recent predictions, else from the log's rows index (any worker's or replica's prediction
    within the newest :data:`~modelyard.serving.predlog.ROWS_LOOKBACK_BYTES` of it; read in a
    thread, one scan at a time per worker, the event loop keeps serving). None if none was
    found."""
    rows = server.recent_rows.get(request_id)
    if rows is None and server.predlog is not None:
        import asyncio

        from modelyard.serving.predlog import logged_rows

        folder = server.predlog.folder.parent
        loop = asyncio.get_running_loop()

        def scan() -> int | None:
            with server.rows_scan:
                return logged_rows(folder, request_id)

        rows = await loop.run_in_executor(None, scan)
        if rows is not None:
            server.recent_rows.add(request_id, rows)
    return rows


async def _feedback(
    server: ModelServer, headers: dict[bytes, bytes], request_id: str, receive: Receive, send: Send
) -> int:
    if server.feedback is None:
        raise HTTPError(503, "the model is still loading")
    _check_json_type(_media_type(headers.get(b"content-type")))
    body = _parse_json(
        await _read_body(receive, server.config.max_body_bytes, headers.get(b"content-length"))
    )
    items = body.get("feedback") if isinstance(body, dict) and "feedback" in body else body
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise InvalidInput("send {'request_id': ..., 'label': ...} or a list of them", "feedback")
    now = time.time_ns()
    log = server.feedback
    limit = server.config.max_label_bytes
    rows = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object", where)
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid or len(rid) > _MAX_ID:
            raise InvalidInput(
                f"{where}.request_id must be a non-empty string", f"{where}.request_id"
            )
        if "label" not in item:
            raise InvalidInput(f"{where} needs a 'label'", f"{where}.label")
        label = item["label"]
        check_label(
            label, await _rows_of(server, rid), server.config.max_batch_rows, f"{where}.label"
        )
        row = log.encode((rid, now, server.name, server.version, label))
        if len(row[-1]) > limit:
            raise InvalidInput(
                f"{where}.label is over the limit of {limit} bytes", f"{where}.label"
            )
        rows.append(row)
    # One commit: the labels of one request are written together or refused together.
    await log.commit(rows)
    await _send(send, 200, _json({"accepted": len(rows)}), request_id)
    return 200


_ACTIONS = {
    "live": _live,
    "ready": _ready,
    "ping": _ping,
    "version": _version,
    "server_meta": _server_meta,
    "model_meta": _model_meta,
    "model_ready": _model_ready,
    "metrics": _metrics,
    "infer": _infer,
    "invocations": _invocations,
    "feedback": _feedback,
}
