"""The BentoML peer: ``bentoml serve bento_service:Model`` with BENCH_MODEL set to a
``*.joblib`` written by ``peer_models.py``; BENCH_BATCHING=1 turns on adaptive batching.

It answers ``POST /invocations`` with ``{"instances": [[...], ...]}``, the same body wrk sends
to every other server.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

BATCHING = os.environ.get("BENCH_BATCHING") == "1"


@bentoml.service(workers=1)
class Model:
    def __init__(self) -> None:
        import joblib

        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api(batchable=BATCHING, max_batch_size=1000, max_latency_ms=1000)
    def invocations(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(instances)
