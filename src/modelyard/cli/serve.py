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
@click.option(
    "--auth-url",
    envvar="MODELYARD_SERVE_AUTH_URL",
    default=None,
    metavar="URL",
    help="Require a token of the team server at URL (role predict, write or admin) on the "
    "prediction routes; health and /metrics stay open.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this Host name (repeatable). By default a loopback or "
    "specific --host answers only its own names, 0.0.0.0 any.",
)
@click.option(
    "--grpc-port",
    envvar="MODELYARD_SERVE_GRPC_PORT",
    default=None,
    type=click.IntRange(0, 65535),
    help="Also serve the V2 gRPC API (inference.GRPCInferenceService) on this port.",
)
@pass_workspace
def serve(
    ws: Workspace,
    ref: str,
    host: str,
    port: int,
    workers: int,
    auth_url: str | None,
    allowed_hosts: tuple[str, ...],
    grpc_port: int | None,
) -> None:
    """Serve model version REF (churn@production, churn@3…) over HTTP.

    Speaks the Open Inference Protocol (/v2/..., and gRPC with --grpc-port) and MLflow's
    /invocations; every prediction is logged under .modelyard/predictions/NAME/. With
    --auth-url, prediction requests need `Authorization: Bearer TOKEN` (over gRPC: metadata
    `authorization`), verified by that team server.
    """
    from modelyard.models import plan_serving, serve_plan

    plan = plan_serving(ref, ws)
    console().print(
        f"Serving {plan.version.ref} ({plan.version.flavor}) on http://{host}:{port} "
        f"with {workers} worker(s); predictions logged to {plan.prediction_dir}"
        + (f", gRPC on {host}:{grpc_port}" if grpc_port is not None else "")
        + (f"; prediction routes need a token of {auth_url}" if auth_url else "")
    )
    options: dict[str, object] = {"auth_url": auth_url} if auth_url else {}
    if allowed_hosts:
        options["allowed_hosts"] = allowed_hosts
    if grpc_port is not None:
        options["grpc_port"] = grpc_port
    serve_plan(plan, host=host, port=port, workers=workers, **options)
