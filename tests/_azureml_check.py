"""Run by the azure-ai-ml client venv's python (tests/_client_venvs.py): load each YAML file named
on the command line exactly as ``az ml online-endpoint/online-deployment create -f FILE`` does
(azure-ai-ml's ``load_online_endpoint`` / ``load_online_deployment``: its marshmallow schema
refuses unknown and ill-typed fields), run the SDK's own checks of names and settings, turn each
into the REST body the SDK would send, and print one JSON object per file: ``{"file", "kind",
"entity", "rest"}``, or ``{"file", "error"}``. Nothing is sent anywhere."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from azure.ai.ml import load_online_deployment, load_online_endpoint
from azure.ai.ml.entities._endpoint._endpoint_helpers import validate_endpoint_or_deployment_name

LOCATION = "westeurope"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)["$schema"]
    if schema.endswith("/managedOnlineEndpoint.schema.json"):
        endpoint = load_online_endpoint(source=path)
        validate_endpoint_or_deployment_name(endpoint.name)
        rest = endpoint._to_rest_online_endpoint(LOCATION).as_dict()
        return {"kind": type(endpoint).__name__, "entity": endpoint._to_dict(), "rest": rest}
    deployment = load_online_deployment(source=path)
    validate_endpoint_or_deployment_name(deployment.name, is_deployment=True)
    deployment._validate()
    rest = deployment._to_rest_object(LOCATION).as_dict()
    return {"kind": type(deployment).__name__, "entity": deployment._to_dict(), "rest": rest}


def main() -> int:
    for path in sys.argv[1:]:
        try:
            answer = {"file": path, **check(path)}
        except Exception as exc:  # the SDK's ValidationError / ValidationException
            answer = {"file": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(_plain(answer)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
