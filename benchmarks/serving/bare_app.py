"""The ceiling: a bare ASGI app that parses JSON and calls predict — nothing else.

Run: MODEL_DIR=... uvicorn --factory bare_app:create
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def create() -> Any:
    import skops.io as sio

    path = Path(os.environ["MODEL_DIR"]) / "model.skops"
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))

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
        x = np.asarray(orjson.loads(body)["instances"], dtype=np.float64)
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
