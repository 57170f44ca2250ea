"""``modelyard deploy`` (and ``deploy rollback``) and ``modelyard deployments``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from modelyard.cli._common import console, pass_workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelyard.store.deploy_entities import Deployment
    from modelyard.workspace import Workspace


class _TargetChoice(click.Choice):  # type: ignore[type-arg]
    """``--target``'s choices, read from the target registry only when a command parses or
    shows them: importing every target (cloud SDK adapters, Kubernetes manifests) cost about
    half of every CLI command's start, ``modelyard serve`` included."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        from modelyard.deploy.registry import TARGETS

        return tuple(TARGETS)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass  # always the registry's


class _DeployGroup(click.Group):
    """``deploy REF [options]`` runs a rollout; ``deploy rollback NAME`` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DeployGroup)
def deploy() -> None:
    """Deploy a model version as a web service (also: 'deploy rollback NAME').

    \b
      modelyard deploy churn@production --name churn-api --port 8080
      modelyard deploy churn@production --target docker --name churn-api --replicas 2
      modelyard deploy churn@production --target kubernetes --namespace ml --dry-run -o yaml
      modelyard deploy churn@production --target sagemaker --role-arn ARN --dry-run -o json
      modelyard deploy churn@4 --name churn-api --strategy shadow --sample 0.2 --for 30m
      modelyard deploy churn@4 --name churn-api --strategy canary --steps 5,25,50,100 --interval 10m
      modelyard deploy churn@production --target azureml --dry-run -o yaml --dry-run-dir azure/
    """


@deploy.command("run")
@click.argument("ref")
@click.option(
    "--target",
    type=_TargetChoice(),
    default=None,
    help="Where to run it [default: docker when installed, else local].",
)
@click.option("--name", default=None, help="Service name [default: the model's name].")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--replicas", default=None, type=click.IntRange(1, 64), help="[default: 1; k8s 2]")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to become ready.")
@click.option("--namespace", default="default", show_default=True, help="Kubernetes namespace.")
@click.option("--min", "min_replicas", default=None, type=click.IntRange(1), help="HPA minimum.")
@click.option("--max", "max_replicas", default=None, type=click.IntRange(1), help="HPA maximum.")
@click.option("--cpu-target", default=70, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--auth-url",
    default=None,
    metavar="URL",
    help="Require predict tokens of the team server at URL on the prediction routes of every "
    "replica ('' turns that off) [default: what the deployment has, no tokens for a new one].",
)
@click.option("--role-arn", default=None, help="SageMaker: the IAM role the model runs as.")
@click.option("--region", default=None, help="SageMaker: AWS region [default: us-east-1].")
@click.option("--instance-type", default=None, help="SageMaker [default: ml.m5.large], Azure ML "
              "[default: Standard_DS3_v2].")  # fmt: skip
@click.option("--ecr-repository", default=None, help="SageMaker: ECR repository of the image.")
@click.option("--push", is_flag=True, default=None, help="SageMaker: push the built image to "
              "--ecr-repository first (credentials from ECR's authorization token).")  # fmt: skip
@click.option(
    "--traffic",
    type=click.Choice(["all_at_once", "canary", "linear", "shadow"]),
    default=None,
    help="SageMaker, Azure ML: how an update shifts traffic [default: all_at_once].",
)
@click.option("--traffic-percent", default=None, type=click.IntRange(1, 100), help="[default: 10]")
@click.option("--wait", "wait_s", default=None, type=click.IntRange(0, 3600), help="[default: 300]")
@click.option("--alarm", "alarms", multiple=True, help="SageMaker: CloudWatch alarm that rolls "
              "an update back (repeatable).")  # fmt: skip
@click.option("--subscription-id", default=None, help="Azure ML: the workspace's subscription.")
@click.option("--resource-group", default=None, help="Azure ML: the workspace's resource group.")
@click.option("--aml-workspace", default=None, help="Azure ML: the workspace's name.")
@click.option("--endpoint", default=None, help="Azure ML: endpoint name [default: --name].")
@click.option("--acr-repository", default=None, help="Azure ML: repository of the image.")
@click.option("--auth-mode", type=click.Choice(["key", "aml_token"]), default=None,
              help="Azure ML: how callers authenticate [default: key].")  # fmt: skip
@click.option(
    "--strategy",
    type=click.Choice(["replace", "shadow", "canary"]),
    default="replace",
    show_default=True,
    help="replace: the new version takes all traffic once ready; shadow: it gets a copy of "
    "live requests (--sample), answers dropped; canary: it answers a growing share (--steps). "
    "Shadow and canary are analysed against the serving version and abort on a failed check; "
    "on sagemaker and azureml the platform runs them (shadow variant / mirror_traffic, "
    "traffic shifting / split).",
)
@click.option("--sample", default=1.0, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="shadow: share of requests copied to the candidate.")  # fmt: skip
@click.option("--for", "for_", default=None, metavar="DURATION",
              help="shadow: how long it runs (30s, 30m) [default: --interval].")  # fmt: skip
@click.option("--requests", "shadow_requests", default=None, type=click.IntRange(1),
              help="shadow: end once the candidate answered this many copies.")  # fmt: skip
@click.option("--steps", default="5,25,50,100", show_default=True,
              help="canary: the candidate's share of requests at each step, in %.")  # fmt: skip
@click.option("--interval", default="10m", show_default=True, metavar="DURATION",
              help="canary: how long each step runs before its analysis.")  # fmt: skip
@click.option("--sticky", default=None, metavar="HEADER",
              help="canary: keep each value of this request header on one variant.")  # fmt: skip
@click.option("--check", "checks", multiple=True, metavar="KEY=VALUE",
              help="Override an analysis threshold of [deploy.analysis] (repeatable), "
              "e.g. --check max_error_rate_increase=0.02.")  # fmt: skip
@click.option("--alias", default="production", show_default=True,
              help="shadow/canary: alias moved (through its gate) once the candidate serves; "
              "'' moves none.")  # fmt: skip
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would be applied (Kubernetes manifests, SageMaker API requests, Azure ML "
    "endpoint and deployment YAML).",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option(
    "--dry-run-dir",
    type=click.Path(file_okay=False, writable=True),
    default=None,
    help="With --dry-run: also write each document to its own numbered file in this folder "
    "(for tools that take one document a file: az ml ... -f, kubectl apply -f).",
)
@pass_workspace
def run(
    ws: Workspace,
    ref: str,
    target: str | None,
    name: str | None,
    port: int,
    replicas: int | None,
    timeout: float,
    namespace: str,
    min_replicas: int | None,
    max_replicas: int | None,
    cpu_target: int,
    auth_url: str | None,
    role_arn: str | None,
    region: str | None,
    instance_type: str | None,
    ecr_repository: str | None,
    push: bool | None,
    traffic: str | None,
    traffic_percent: int | None,
    wait_s: int | None,
    alarms: tuple[str, ...],
    strategy: str,
    sample: float,
    for_: str | None,
    shadow_requests: int | None,
    steps: str,
    interval: str,
    sticky: str | None,
    checks: tuple[str, ...],
    alias: str,
    subscription_id: str | None,
    resource_group: str | None,
    aml_workspace: str | None,
    endpoint: str | None,
    acr_repository: str | None,
    auth_mode: str | None,
    dry_run: bool,
    output: str,
    dry_run_dir: str | None,
) -> None:
    """Roll out REF (churn@production, churn@4) as service --name."""
    from modelyard import deploy as api
    from modelyard.models import resolve

    chosen = api.get_target(target or api.default_target())
    service = name or resolve(ref, ws).name
    # Each target takes the flags that are its options (--namespace, --min… on Kubernetes).
    flags = {"namespace": namespace, "min_replicas": min_replicas, "max_replicas": max_replicas,
             "cpu_target": cpu_target, "role_arn": role_arn, "region": region,
             "instance_type": instance_type, "ecr_repository": ecr_repository, "push": push,
             "traffic": traffic, "traffic_percent": traffic_percent, "wait_s": wait_s,
             "alarms": alarms or None, "subscription_id": subscription_id,
             "resource_group": resource_group, "aml_workspace": aml_workspace,
             "endpoint": endpoint, "acr_repository": acr_repository,
             "auth_mode": auth_mode}  # fmt: skip
    options = chosen.options_type.from_settings(flags)
    if strategy in options.PLATFORM_STRATEGIES:
        # The platform shifts the traffic itself (SageMaker, Azure ML): its options say how.
        options = options.with_strategy(_platform_strategy(strategy, sample, steps, interval))
        strategy = "replace"
    spec = api.DeploySpec(
        ref,
        service,
        target=chosen.name,
        port=port,
        replicas=replicas or chosen.default_replicas,
        timeout_s=timeout,
        auth_url=auth_url,
        options=options,
        strategy=strategy,
    )
    if strategy != "replace" and not dry_run:
        _progressive(ws, spec, sample, for_, shadow_requests, steps, interval, sticky, checks,
                     alias)  # fmt: skip
        return
    if dry_run:
        manifests = api.plan(spec, workspace=ws)
        if manifests is None:
            raise click.UsageError(f"--dry-run: the {chosen.name} target applies no manifests")
        import json

        from modelyard.deploy.kubernetes import to_yaml

        if dry_run_dir:  # written first: a folder that cannot be written fails before output
            _write_documents(manifests, dry_run_dir, output)
        click.echo((to_yaml(manifests) if output == "yaml" else json.dumps(manifests)).rstrip())
        return
    dep = api.deploy(spec, workspace=ws)
    current = dep.current
    assert current is not None
    out = console()
    out.print(
        f"{service} serves {current.model_ref} on {chosen.address(dep)} "
        f"({chosen.name}, {dep.replicas} replica(s), revision {current.revision})",
        markup=False,
    )
    _print_auth(out, dep)


def _progressive(
    ws: Workspace,
    spec: Any,
    sample: float,
    for_: str | None,
    requests: int | None,
    steps: str,
    interval: str,
    sticky: str | None,
    checks: tuple[str, ...],
    alias: str,
) -> None:
    from modelyard.errors import RolloutAborted
    from modelyard.monitor import progressive as pg
    from modelyard.monitor.analysis import thresholds_for
    from modelyard.monitor.policy import parse_duration

    overrides = {}
    for item in checks:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--check takes KEY=VALUE, not {item!r}")
        overrides[key.strip()] = value.strip()
    every = parse_duration(interval, "--interval")
    if spec.strategy == "shadow":
        length = parse_duration(for_, "--for") if for_ else every
        plan_steps: tuple[pg.Step, ...] = (pg.shadow_step(sample, length, requests),)
    else:
        plan_steps = pg.canary_steps(pg.parse_steps(steps), every)
    plan = pg.RolloutPlan(plan_steps, thresholds_for(ws, overrides), sticky, alias or None)
    out = console()
    out.print(f"{spec.name}: {spec.strategy} rollout of {spec.ref}", markup=False)
    for step in plan.steps:
        out.print(f"  planned: {step.describe()}", markup=False)

    def show(record: pg.StepRecord) -> None:
        render_analysis(out, f"step {record.index}: {record.step.describe()}", record.analysis)

    try:
        result = pg.rollout(spec, plan, workspace=ws, on_step=show)
    except RolloutAborted:
        out.print(f"{spec.name}: aborted, the serving version keeps all the traffic", markup=False)
        raise
    out.print(result.reason, markup=False)


def render_analysis(out: Any, title: str, analysis: Any) -> None:
    """One step's analysis as a table, like the promotion gate's."""
    from rich.table import Table

    table = Table("check", "candidate", "serving", "limit", "result", "detail", title=title)
    for r in analysis.results:
        mark = {"pass": "[green]pass[/]", "FAIL": "[red]FAIL[/]"}.get(r.verdict, "[dim]n/a[/]")
        table.add_row(r.check, _num(r.candidate), _num(r.primary), r.limit, mark, r.detail)
    out.print(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _platform_strategy(strategy: str, sample: float, steps: str, interval: str) -> Any:
    from modelyard.deploy.target import PlatformStrategy
    from modelyard.monitor import progressive as pg
    from modelyard.monitor.policy import parse_duration

    every = parse_duration(interval, "--interval")
    return PlatformStrategy(strategy, sample, tuple(pg.parse_steps(steps)), every)


def _write_documents(documents: list[dict[str, Any]], folder: str, output: str) -> None:
    """Each document as ``NN-KIND.yml`` (or ``.json``) in ``folder``: KIND is its ``kind``,
    its API ``operation`` or the name of its ``$schema``."""
    import json
    import re
    from pathlib import Path

    from modelyard.deploy.kubernetes import to_yaml

    out = Path(folder)
    files: dict[str, str] = {}
    for number, doc in enumerate(documents, 1):
        kind = str(
            doc.get("kind")
            or doc.get("operation")
            or str(doc.get("$schema", "doc")).rpartition("/")[2]
        ).removesuffix(".schema.json")
        suffix = "yml" if output == "yaml" else "json"
        name = f"{number:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', kind)}.{suffix}"
        files[name] = to_yaml([doc]) if output == "yaml" else json.dumps(doc, indent=2) + "\n"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(f"--dry-run-dir {folder}: {exc.strerror or exc}") from None


def _print_auth(out: Any, dep: Deployment | None) -> None:
    from modelyard import deploy as api

    url = api.recorded_auth_url(dep)
    if url:
        out.print(f"prediction routes need a predict token of {url}", markup=False)


@deploy.command("rollback")
@click.argument("name")
@click.option("--timeout", default=120.0, show_default=True)
@pass_workspace
def rollback(ws: Workspace, name: str, timeout: float) -> None:
    """Go back to the version NAME served before the current one."""
    from modelyard import deploy as api

    dep = api.rollback(name, workspace=ws, timeout_s=timeout)
    assert dep.current is not None
    console().print(f"{name} rolled back to {dep.current.model_ref}", markup=False)


@click.group()
def deployments() -> None:
    """List, inspect, read the logs of and stop deployments."""


@deployments.command("list")
@pass_workspace
def list_(ws: Workspace) -> None:
    """Every deployment with its target, version and status."""
    from rich.table import Table

    from modelyard import deploy as api

    table = Table("name", "target", "version", "status", "port", "replicas", "revision")
    for dep in api.list_deployments(workspace=ws):
        current = dep.current
        table.add_row(
            dep.name,
            dep.target,
            current.model_ref if current else "-",
            dep.status,
            str(dep.port or "-"),
            str(dep.replicas),
            str(dep.revision or "-"),
        )
    console().print(table)


@deployments.command("status")
@click.argument("name")
@pass_workspace
def status(ws: Workspace, name: str) -> None:
    """Version, image digest, replicas, health and traffic (from the replicas' /metrics)."""
    from modelyard import deploy as api

    st = api.status(name, workspace=ws)
    dep = st.deployment
    cur = dep.current
    t = st.traffic
    lines = [
        f"name:       {dep.name} ({dep.target}, {dep.status})",
        f"version:    {cur.model_ref if cur else '-'} (revision {dep.revision or '-'})",
        f"image:      {(cur.image_ref if cur else None) or '-'}",
        f"digest:     {(cur.image_digest if cur else None) or '-'}",
        f"replicas:   {st.ready_replicas}/{dep.replicas} ready",
        f"health:     {'healthy' if st.healthy else 'unhealthy'}",
        f"auth:       {f'predict tokens of {st.auth_url}' if st.auth_url else 'none'}",
        f"requests:   {t.requests:.0f} ({st.request_rate or 0:.2f}/s since the rollout)",
        f"errors:     {t.errors:.0f} ({t.error_rate:.2%})",
        f"latency:    p50 {_ms(t.p50_s)}  p99 {_ms(t.p99_s)}",
    ]
    config = dep.config or {}
    candidate, split = config.get("candidate"), config.get("split")
    if candidate:
        share = f"{split['mode']} {split['percent']:g} %" if split else "no traffic yet"
        sticky = f", sticky by {split['sticky']}" if split and split.get("sticky") else ""
        lines.append(f"variants:   primary {cur.model_ref if cur else '-'}; candidate "
                     f"{candidate.get('ref')} ({share}{sticky})")  # fmt: skip
    for event in api.events(name, workspace=ws, limit=5):
        lines.append(f"event:      {event.at:%Y-%m-%d %H:%M:%S} {event.kind}: "
                     f"{event.message.splitlines()[0]}")  # fmt: skip
    click.echo("\n".join(lines))
    _show_rollout(ws, name)


def _show_rollout(ws: Workspace, name: str) -> None:
    """The latest progressive rollout of ``name``: its steps, weights and analysis tables."""
    from modelyard.monitor import progressive as pg

    found = pg.rollouts(ws, name, limit=1)
    if not found:
        return
    last = found[0]
    out = console()
    out.print(f"rollout:    {last['id']} {last.get('strategy')} of {last.get('candidate')} "
              f"(serving {last.get('primary')}): {last['status']}"
              + (f" - {last['reason']}" if last.get("reason") else ""), markup=False)  # fmt: skip
    for step, analysis in pg.step_analyses(last):
        title = (f"step {step['index']}: {step['mode']} {step['percent']:g} % - "
                 f"{'passed' if analysis.passed else 'FAILED'}")  # fmt: skip
        render_analysis(out, title, analysis)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"<= {seconds * 1000:.0f} ms"


@deployments.command("logs")
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(1, 10000))
@pass_workspace
def logs(ws: Workspace, name: str, lines: int) -> None:
    """The last lines the service printed."""
    from modelyard import deploy as api

    click.echo(api.logs(name, lines=lines, workspace=ws))


@deployments.command("stop")
@click.argument("name")
@pass_workspace
def stop(ws: Workspace, name: str) -> None:
    """Stop every replica of NAME (in-flight requests finish); its history is kept."""
    from modelyard import deploy as api

    api.stop(name, workspace=ws)
    console().print(f"Stopped {name}", markup=False)
