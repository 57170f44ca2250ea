"""The ceiling: a bare ASGI app that parses JSON and calls predict — nothing else.

Run: MODEL_DIR=... uvicorn --factory bare_app:create

A tensor model takes ``{"instances": rows}``. A model fitted on a DataFrame (it knows its
``feature_names_in_``) takes MLflow's ``dataframe_split`` or ``dataframe_records`` and gets a
DataFrame of one float block, built the cheapest way numpy and pandas offer.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def create() -> Any:
    import skops.io as sio

    path = Path(os.environ["MODEL_DIR"]) / "model.skops"
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        columns = [str(n) for n in names]
        pick = operator.itemgetter(*columns)

        def features(body: dict[str, Any]) -> Any:
            if "dataframe_split" in body:
                split = body["dataframe_split"]
                x = np.asarray(split["data"], dtype=np.float64)
                return pd.DataFrame(x, columns=split["columns"], copy=False)
            x = np.asarray(list(map(pick, body["dataframe_records"])), dtype=np.float64)
            return pd.DataFrame(x, columns=columns, copy=False)
    else:

        def features(body: dict[str, Any]) -> Any:
            return np.asarray(body["instances"], dtype=np.float64)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    msg = await receive()
                    await send({"type": msg["type"] + ".complete"})
                    if msg["type"] == "lifespan.shutdown":
                        return
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        x = features(orjson.loads(body))
        out = orjson.dumps({"predictions": model.predict(x)}, option=orjson.OPT_SERIALIZE_NUMPY)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})

    return app
