"""The V2 gRPC endpoint: ``inference.GRPCInferenceService`` on its own port (``--grpc-port``).

Off unless a port is given, and grpcio is imported only then, so the HTTP-only server pays
nothing for it. It runs in the HTTP server's event loop and goes through the same model
server: the same decoder (validation), the same micro-batcher, the same prediction log (written
before the answer) and metrics (route ``grpc:ModelInfer`` with the HTTP status the error would
have had) and the same bearer tokens (metadata ``authorization: Bearer …`` on ModelInfer;
health and metadata stay open, as over HTTP).

Served methods: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer (inputs as ``contents`` or ``raw_input_contents``; outputs always as
``raw_output_contents``, as Triton answers). Others get ``UNIMPLEMENTED`` from gRPC itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import grpc
import numpy as np
from google.protobuf.message import Message

from modelyard._version import __version__
from modelyard.errors import ConfigError, HTTPError, InvalidInput, InvalidRequest, LogWriteError
from modelyard.serving import v2
from modelyard.serving._proto import grpc_predict_v2_pb2 as pb
from modelyard.serving.handlers import log_prediction, make_request_id

if TYPE_CHECKING:
    from modelyard.serving.app import ModelServer

logger = logging.getLogger("modelyard.serving")

SERVICE: Final = "inference.GRPCInferenceService"

_Call = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]

#: Which ``InferTensorContents`` field holds each datatype, and its numpy dtype.
_CONTENTS: Final = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int8),
    "INT16": ("int_contents", np.int16),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint8),
    "UINT16": ("uint_contents", np.uint16),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
}


def _status_code(status: int) -> grpc.StatusCode:
    return {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        422: grpc.StatusCode.INVALID_ARGUMENT,
        503: grpc.StatusCode.UNAVAILABLE,
    }.get(status, grpc.StatusCode.INTERNAL)


def _parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    return {
        key: getattr(p, p.WhichOneof("parameter_choice") or "bool_param")
        for key, p in params.items()
    }


class GrpcEndpoint:
    """The gRPC server of one :class:`~modelyard.serving.app.ModelServer`."""

    def __init__(self, server: ModelServer, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> None:
        config = self.server.config
        options = [
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            # Several workers share the port (the kernel spreads connections); one worker
            # alone must fail loudly when another process holds it.
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        ]
        rpcs: dict[str, tuple[_Call, type[Message], type[Message]]] = {
            "ServerLive": (self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": (self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": (self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": (
                self.server_metadata,
                pb.ServerMetadataRequest,
                pb.ServerMetadataResponse,
            ),
            "ModelMetadata": (
                self.model_metadata,
                pb.ModelMetadataRequest,
                pb.ModelMetadataResponse,
            ),
            "ModelInfer": (self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        }
        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            name: grpc.unary_unary_rpc_method_handler(
                self._wrap(name, call), request.FromString, response.SerializeToString
            )
            for name, (call, request, response) in rpcs.items()
        }
        self._grpc = grpc.aio.server(options=options)
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, methods),)
        )
        try:
            host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
            self.port = self._grpc.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:
            self._grpc = None
            raise ConfigError(f"cannot listen for gRPC on {self.host}:{self.port}: {exc}") from None
        await self._grpc.start()
        logger.info("V2 gRPC on %s:%d", self.host, self.port)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls and let running ones finish for up to ``grace_s`` seconds."""
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
            self._grpc = None

    # ---- plumbing --------------------------------------------------------------------------
    def _wrap(self, method: str, call: _Call) -> _Call:
        """One method: errors become gRPC status codes, every call is counted in the metrics."""
        route = f"grpc:{method}"

        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            metrics = self.server.metrics
            status, message = 500, ""
            if metrics is not None:
                metrics.inflight.inc()
            try:
                try:
                    response = await call(request, context)
                    status = 200
                    return response
                except HTTPError as exc:
                    status, message = exc.status, exc.message
                except InvalidRequest as exc:
                    status, message = 400, exc.message
                except InvalidInput as exc:
                    status, message = 422, exc.message
                except LogWriteError as exc:  # no answer for a prediction that is not logged
                    status, message = 503, exc.message
                except Exception as exc:
                    logger.exception("gRPC %s failed", method)
                    message = f"internal error: {exc}"
                await context.abort(_status_code(status), message)
            finally:
                if metrics is not None:
                    metrics.inflight.dec()
                    metrics.observe(route, status, time.perf_counter() - started)

        return handler

    def _check_model(self, name: str, version: str) -> None:
        server = self.server
        if name != server.name:
            raise HTTPError(404, f"unknown model {name!r}; this server answers {server.name!r}")
        if version and version != server.version:
            raise HTTPError(404, f"unknown version {version!r} of model {name!r}")

    # ---- methods ---------------------------------------------------------------------------
    async def server_live(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.server.ready)

    async def model_ready(self, request: Any, context: Any) -> Any:
        self._check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.server.ready)

    async def server_metadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(
            name="modelyard", version=__version__, extensions=list(v2.EXTENSIONS)
        )

    async def model_metadata(self, request: Any, context: Any) -> Any:
        self._check_model(request.name, request.version)
        model = self.server.model
        if model is None:
            raise HTTPError(503, "the model is still loading")
        sig = model.meta.signature
        tensor = pb.ModelMetadataResponse.TensorMetadata

        def tensors(specs: Sequence[Any]) -> list[Any]:
            return [
                tensor(
                    name=s.name,
                    datatype=s.v2_datatype,
                    shape=list(s.shape) if s.shape is not None else [-1],
                )
                for s in specs
            ]

        return pb.ModelMetadataResponse(
            name=self.server.name,
            versions=[self.server.version],
            platform=model.meta.flavor,
            inputs=tensors(sig.inputs),
            outputs=tensors(sig.outputs),
        )

    async def model_infer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        server = self.server
        started = time.perf_counter()
        self._check_model(request.model_name, request.model_version)
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        if server.auth is not None:
            token = metadata.get("authorization", "").encode("latin-1", "replace")
            await server.auth.authorize("infer", {b"authorization": token} if token else {})
        if server._predict is None or server.decoder is None:
            raise HTTPError(503, "the model is still loading")
        result = await v2.infer(server, _request_body(request))
        response = pb.ModelInferResponse(
            model_name=server.name, model_version=server.version, id=request.id
        )
        for wanted, arr in result.tensors:
            response.outputs.add(name=wanted.name, datatype=v2.datatype_of(arr), shape=arr.shape)
            response.raw_output_contents.append(v2.encode_raw(arr))
        request_id = make_request_id((request.id or metadata.get("x-request-id", "")).encode())
        await log_prediction(server, request_id, "grpc", result.batch, result.output, started)
        return response


def _request_body(request: Any) -> dict[str, Any]:
    """A ``ModelInferRequest`` as the V2 request dict the decoder reads (arrays as ``data``)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(f"input {tensor.name!r}: shape must be a list of sizes", tensor.name)
        if raw:
            data: Any = v2.decode_raw(raw[i], tensor.datatype, shape, tensor.name)
        elif tensor.datatype == "BYTES":
            try:
                data = [b.decode("utf-8") for b in tensor.contents.bytes_contents]
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input {tensor.name!r}: BYTES must be UTF-8 text", tensor.name
                ) from None
        elif tensor.datatype in _CONTENTS:
            field, dtype = _CONTENTS[tensor.datatype]
            data = np.asarray(getattr(tensor.contents, field), dtype=dtype)
        else:
            raise InvalidRequest(
                f"input {tensor.name!r}: datatype {tensor.datatype!r} needs raw_input_contents"
            )
        inputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": shape,
                "data": data,
                "parameters": _parameters(tensor.parameters),
            }
        )
    outputs = [{"name": o.name, "parameters": _parameters(o.parameters)} for o in request.outputs]
    return {"id": request.id, "inputs": inputs, "outputs": outputs}
