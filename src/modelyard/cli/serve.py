"""``modelyard serve``: serve a registered model version locally (no Docker)."""

from __future__ import annotations

import click

from modelyard.cli._common import console, pass_workspace
from modelyard.workspace import Workspace


@click.command()
@click.argument("ref")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@pass_workspace
def serve(ws: Workspace, ref: str, host: str, port: int, workers: int) -> None:
    """Serve model version REF (churn@production, churn@3…) over HTTP.

    Speaks the Open Inference Protocol (/v2/...) and MLflow's /invocations; every prediction is
    logged under .modelyard/predictions/NAME/.
    """
    from modelyard.models import plan_serving, serve_plan

    plan = plan_serving(ref, ws)
    console().print(
        f"Serving {plan.version.ref} ({plan.version.flavor}) on http://{host}:{port} "
        f"with {workers} worker(s); predictions logged to {plan.prediction_dir}"
    )
    serve_plan(plan, host=host, port=port, workers=workers)
