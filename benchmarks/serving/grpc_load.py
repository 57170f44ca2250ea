"""A bounded gRPC load loop for the serving benchmark (no gRPC counterpart of wrk here):
``python grpc_load.py PORT MODEL ROWS CONNS SECONDS`` sends V2 ``ModelInfer`` calls with
``raw_input_contents`` from CONNS concurrent callers for SECONDS seconds over one channel, and
prints ``{"rps": ..., "p50_ms": ..., "p99_ms": ..., "errors": ...}``.

It is Python, so on a small machine it is slower than wrk and takes CPU from the server: its
numbers are a lower bound of what the server could do, not comparable one-to-one with wrk's.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import grpc
import numpy as np
from bench_models import N_FEATURES

from modelyard.serving._proto import grpc_predict_v2_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def main(port: int, model: str, rows: int, conns: int, seconds: float) -> None:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input-0", datatype="FP64", shape=[rows, N_FEATURES])
    request.raw_input_contents.append(np.full((rows, N_FEATURES), 0.5).astype("<f8").tobytes())
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        await call(request)  # connect before the clock starts
        stop = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    await call(request, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(conns)))
        elapsed = time.monotonic() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "rps": len(latencies) / elapsed,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    port, model, rows, conns, seconds = sys.argv[1:6]
    asyncio.run(main(int(port), model, int(rows), int(conns), float(seconds)))
