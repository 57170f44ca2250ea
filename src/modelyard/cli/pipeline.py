"""``modelyard pipeline``: run, resume, inspect and compile pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from modelyard.cli._common import console, param_option, pass_workspace, push_options
from modelyard.errors import StepFailed
from modelyard.workspace import Workspace

if TYPE_CHECKING:
    from modelyard.pipeline.run import StepEvent
    from modelyard.pipeline.runners.base import Runner
    from modelyard.store.pipeline_entities import PipelineRun

_STYLE = {
    "finished": "green",
    "cached": "blue",
    "reused": "blue",
    "failed": "red",
    "skipped": "yellow",
    "running": "cyan",
    "retrying": "yellow",
    "pending": "dim",
}
_MARK = {"finished": "✓", "cached": "↺", "reused": "↺", "failed": "✗", "skipped": "–"}

_run_options = [
    click.option(
        "--jobs",
        "-j",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="Run up to N independent steps at once.",
    ),
    click.option("--no-cache", is_flag=True, help="Run every step even if a cached result fits."),
    click.option(
        "--in-process",
        is_flag=True,
        help="Run steps in this process (for a debugger); no isolation, no timeouts.",
    ),
    click.option(
        "--runner",
        type=click.Choice(["local", "docker"]),
        default=None,
        help="Where steps run (run: local; resume: where the original run ran).",
    ),
]


def _with_run_options(fn: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_run_options):
        fn = option(fn)
    return fn


@click.group()
def pipeline() -> None:
    """Pipelines: cached, ordered steps; each step a tracked run."""


@pipeline.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@param_option("Override a pipeline parameter (repeatable).")
@click.option("--name", help="Which pipeline, when FILE defines several.")
@_with_run_options
@pass_workspace
def run(
    ws: Workspace,
    file: Path,
    params: tuple[str, ...],
    name: str | None,
    jobs: int,
    no_cache: bool,
    in_process: bool,
    runner: str | None,
) -> None:
    """Run the pipeline defined in FILE."""
    from modelyard.pipeline.params import parse_assignments
    from modelyard.pipeline.run import run_pipeline

    result = run_pipeline(
        file,
        params=parse_assignments(params),
        workspace=ws,
        jobs=jobs,
        use_cache=not no_cache,
        runner=_runner(ws, runner or "local", in_process),
        pipeline_name=name,
        on_event=_print_event,
    )
    _conclude(result)


@pipeline.command()
@click.argument("run_id", metavar="RUN")
@_with_run_options
@pass_workspace
def resume(
    ws: Workspace, run_id: str, jobs: int, no_cache: bool, in_process: bool, runner: str | None
) -> None:
    """Re-run what did not finish in pipeline run RUN (a new run reusing finished steps)."""
    from modelyard.pipeline.run import resume_pipeline

    result = resume_pipeline(
        run_id,
        workspace=ws,
        jobs=jobs,
        use_cache=not no_cache,
        runner=_runner(ws, runner, in_process),
        on_event=_print_event,
    )
    _conclude(result)


@pipeline.command("runs")
@click.option("--pipeline", "name", help="Only runs of this pipeline.")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(min=1))
@pass_workspace
def runs_(ws: Workspace, name: str | None, limit: int) -> None:
    """List pipeline runs, newest first."""
    items = ws.store.pipelines.list(name, limit)
    out = console()
    if not items:
        out.print("No pipeline runs yet.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "PIPELINE", "STATUS", "STARTED", "STEPS", "CACHED", "DURATION"):
        table.add_column(column, no_wrap=True)
    for r in items:
        cached = sum(s.status in {"cached", "reused"} for s in r.steps)
        table.add_row(
            r.id[:12],
            r.pipeline,
            Text(r.status, style=_STYLE.get(r.status, "")),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(len(r.steps)),
            str(cached),
            _duration(_run_duration(r)),
        )
    out.print(table)


@pipeline.command()
@click.argument("run_id", metavar="RUN")
@pass_workspace
def show(ws: Workspace, run_id: str) -> None:
    """Steps of pipeline run RUN: status, cached or not, durations, errors."""
    r = ws.store.pipelines.get(run_id)
    out = console()
    out.print(f"pipeline run {r.id}  {r.pipeline}  [{_STYLE.get(r.status, '')}]{r.status}[/]")
    out.print(f"file: {r.pipeline_file}   runner: {r.runner}")
    if r.resumed_from:
        out.print(f"resumed from: {r.resumed_from}")
    if r.params:
        out.print("params: " + " ".join(f"{k}={v}" for k, v in sorted(r.params.items())))
    table = Table(box=None, pad_edge=False)
    for column in ("STEP", "STATUS", "CACHED", "ATTEMPTS", "DURATION", "RUN", "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR", overflow="fold")
    for s in r.steps:
        table.add_row(
            s.step,
            Text(s.status, style=_STYLE.get(s.status, "")),
            "yes" if s.status in {"cached", "reused"} else "no",
            str(s.attempts),
            _duration(s.duration_s),
            (s.run_id or "")[:12],
            Text((s.error or "").splitlines()[0] if s.error else ""),
        )
    out.print(table)


@pipeline.command("compile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--target",
    type=click.Choice(["argo", "kubeflow"]),
    default="argo",
    show_default=True,
    help="argo: an Argo Workflow; kubeflow: a KFP v2 pipeline spec (needs modelyard[kubeflow]).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the manifest here (default: standard output).",
)
@click.option(
    "--image",
    default=None,
    help="The default step image (default: [pipeline.TARGET] image); a step's own image "
    "([pipeline.steps.NAME] image, @step(image=...)) still wins.",
)
@param_option("Default for a workflow parameter (repeatable).")
@click.option("--name", help="Which pipeline, when FILE defines several.")
@click.option(
    "--allow-local-state",
    is_flag=True,
    help="Compile without a shared store and artifact location: each pod keeps its own "
    "(only for a one-node trial).",
)
@pass_workspace
def compile_(
    ws: Workspace,
    file: Path,
    target: str,
    output: Path | None,
    image: str | None,
    params: tuple[str, ...],
    name: str | None,
    allow_local_state: bool,
) -> None:
    """Compile the pipeline in FILE to an Argo Workflows manifest or a Kubeflow pipeline.

    \b
    The pods share state through the team's store and artifact location, set in
    modelyard.toml ([pipeline.kubeflow] for --target kubeflow):
      [pipeline.argo]
      image = "registry.example/project-steps:1"
      store_secret = "modelyard-store"         # Secret, key "url": the PostgreSQL URL
      artifacts_claim = "modelyard-artifacts"  # or artifacts_url = "s3://bucket/prefix"
    Without them compiling is refused, naming what to add.
    """
    from modelyard.pipeline.params import parse_assignments

    options: dict[str, Any] = {
        "workspace": ws,
        "image": image,
        "params": parse_assignments(params),
        "pipeline_name": name,
        "allow_local_state": allow_local_state,
    }
    if target == "kubeflow":
        from modelyard.pipeline.kubeflow import compile_kubeflow

        text = compile_kubeflow(file, **options)
        what = "Kubeflow pipeline spec"
    else:
        from modelyard.pipeline.argo import compile_argo, to_yaml

        manifest = compile_argo(file, **options)
        text = to_yaml(manifest)
        what = f"Argo Workflow {manifest['metadata']['generateName']}…"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console().print(f"wrote {what} to {output}")


@pipeline.command("build-images")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--registry", required=True, metavar="HOST[/PREFIX]", help="Where to push.")
@click.option("--name", help="Which pipeline, when FILE defines several.")
@push_options
@pass_workspace
def build_images(
    ws: Workspace,
    file: Path,
    registry: str,
    name: str | None,
    username: str | None,
    password_stdin: bool,
    retries: int,
) -> None:
    """Build the image of each step with requirements of its own (as the docker runner does),
    push it to REGISTRY and record it by digest, so that 'pipeline compile --target
    argo|kubeflow' runs those steps in it. Rebuild after changing their requirements or the
    project's code: compiling refuses an image made from other ones."""
    import sys

    from modelyard.packaging.step_images import build_step_images

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    out = console()
    pushed = build_step_images(
        file,
        registry,
        workspace=ws,
        pipeline_name=name,
        username=username,
        password=password,
        attempts=retries,
        progress=lambda msg: out.print(msg, markup=False),
    )
    if not pushed:
        out.print("No step has requirements of its own without an image: nothing to build.")
    for image in pushed:
        out.print(f"Pushed {image.ref} for step(s) {', '.join(image.steps)}", markup=False)


def _runner(ws: Workspace, name: str | None, in_process: bool) -> Runner | None:
    """The runner asked for; None: the default (resume: the original run's)."""
    from modelyard.pipeline.run import make_runner

    if in_process:
        return make_runner("in-process", ws)
    return None if name is None else make_runner(name, ws)


def _print_event(event: StepEvent) -> None:
    out = console()
    style = _STYLE.get(event.status, "")
    mark = _MARK.get(event.status, "…")
    took = f" {event.duration_s:.2f}s" if event.duration_s else ""
    attempt = f" (attempt {event.attempt})" if event.status == "retrying" else ""
    line = Text(f"{mark} {event.step:<20} ")
    line.append(f"{event.status}{attempt}", style=style)
    line.append(took)
    out.print(line)
    if event.error and event.status in {"failed", "retrying"}:
        for err_line in event.error.splitlines()[:20]:
            out.print(Text(f"    {err_line}", style="red"))


def _conclude(result: PipelineRun) -> None:
    cached = sum(s.status in {"cached", "reused"} for s in result.steps)
    ran = sum(s.status == "finished" for s in result.steps)
    summary = f"{ran} ran, {cached} cached, {len(result.steps)} steps"
    if result.status != "finished":
        first = (result.error or "").splitlines()[0] if result.error else "failed"
        raise StepFailed(
            f"pipeline run {result.id} failed ({summary}): {first}; "
            f"fix it and run 'modelyard pipeline resume {result.id[:12]}'"
        )
    console().print(f"pipeline run {result.id} finished ({summary})")


def _run_duration(r: PipelineRun) -> float | None:
    return None if r.ended_at is None else (r.ended_at - r.created_at).total_seconds()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
