"""Shared by the packaging and deploy tests: register small models, and a load generator
that counts every failed request while a rollout happens."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import numpy as np

from modelyard.workspace import Workspace


class Broken:
    """A python model whose load fails: a replica that exits at start."""

    def load(self, context: Any) -> None:
        raise RuntimeError("this model refuses to load")

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs, dtype=float)[:, 0]


def register_churn(ws: Workspace, versions: int = 2) -> list[str]:
    """``versions`` scikit-learn versions of ``churn`` from tracked runs (same dependencies)."""
    from sklearn.linear_model import LogisticRegression

    from modelyard import models
    from modelyard.tracking import start_run

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    refs = []
    for i in range(versions):
        with start_run("train", workspace=ws) as run:
            run.log_model(LogisticRegression(C=1.0 / (i + 1)).fit(x, y), "model",
                          input_example=x[:5])  # fmt: skip
        refs.append(models.register(run.id, "churn", workspace=ws).ref)
    return refs


def post_json(url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    """POST ``body`` as JSON to ``url``; the decoded answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def wait_ok(url: str, deadline_s: float = 120) -> None:
    """Poll ``url`` until it answers 200 (a test failure after ``deadline_s``)."""
    import time
    import urllib.error

    import pytest

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            exc.close()
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer 200 in {deadline_s:.0f} s")


#: Made-up image digests of churn@1 and churn@2 for the cloud targets' tests (nothing is pulled).
DIGESTS = {1: "sha256:" + "1" * 64, 2: "sha256:" + "2" * 64}


def register_pushed_churn(ws: Workspace) -> Workspace:
    """``churn@1`` and ``churn@2`` recorded as pushed to 127.0.0.1:5000 with :data:`DIGESTS`."""
    register_churn(ws, 2)
    for version, digest in DIGESTS.items():
        ws.store.models.set_image(
            "churn",
            version,
            image_id=None,
            image_digest=digest,
            image_size=None,
            image_ref=f"127.0.0.1:5000/models/churn@{digest}",
        )
    return ws


def register_broken(ws: Workspace, name: str = "churn") -> str:
    from modelyard import models
    from modelyard.tracking import start_run

    with start_run("train-broken", workspace=ws) as run:
        run.log_model(Broken(), "model", input_example=np.zeros((2, 3)))
    ref = models.register(run.id, name, workspace=ws).ref
    # A python model runs its own code: it builds and deploys only once an admin trusted it.
    models.trust_pickle(ref, workspace=ws)
    return ref


class Load:
    """Requests in a loop on a thread, one new connection each, until stopped (with ``token``
    as a bearer token, for a deployment that requires predict tokens)."""

    def __init__(self, url: str, model: str = "churn", token: str | None = None) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.headers = {"content-type": "application/json"}
        if token is not None:
            self.headers["authorization"] = f"Bearer {token}"
        self.ok = 0
        self.failed: list[str] = []
        self.versions: set[str] = set()
        self._answered = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "datatype": "FP64",
                        "shape": [1, 3],
                        "data": [0.1, 0.2, 0.3],
                    }
                ]
            }  # fmt: skip
        ).encode()

    def _run(self) -> None:
        while not self._stop.is_set():
            req = urllib.request.Request(self.url, data=self._body, headers=self.headers)
            try:
                with urllib.request.urlopen(req, timeout=15) as resp:
                    answer = json.loads(resp.read())
                with self._answered:
                    self.ok += 1
                    self._answered.notify_all()
                self.versions.add(str(answer.get("model_version")))
            except Exception as exc:  # every failure is counted, whatever it is
                self.failed.append(repr(exc))

    def wait_ok(self, answers: int, timeout: float = 30.0) -> None:
        """Until ``answers`` requests were answered (at most ``timeout`` seconds)."""
        with self._answered:
            self._answered.wait_for(lambda: self.ok >= answers, timeout)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
