"""Batch scoring on Kubernetes: a batch/v1 Job in Indexed completion mode, one index per shard.

Each pod runs the model image's own runtime (``python -m modelyard.serving.batch``) over the
Parquet row groups its index is dealt (``$JOB_COMPLETION_INDEX``), reading the input from and
writing ``part-<index>.parquet`` to a PersistentVolumeClaim mounted at ``/data``. A part is
written under a temporary name and renamed, so a failed or evicted pod leaves no part behind and
its retry (``backoffLimitPerIndex``) starts clean. ``modelyard data add`` of the output folder
then makes the scores a dataset version.

The pod is locked down like the model server's (see :mod:`modelyard.deploy.kubernetes`): non-root,
read-only root filesystem, all capabilities dropped, no service-account token.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

DATA_MOUNT = "/data"
CONTAINER = "score"
COMPONENT = "batch-scoring"


@dataclass(frozen=True)
class JobSpec:
    """One scoring Job. ``input_path`` and ``output_path`` are relative to the claim's root."""

    name: str
    namespace: str
    image: str
    model: str
    version: str
    claim: str
    input_path: str
    output_path: str
    shards: int = 1
    parallelism: int | None = None
    columns: tuple[str, ...] = ()
    batch_rows: int = 65_536
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    retries_per_shard: int = 2
    labels: dict[str, str] = field(default_factory=dict)
    image_pull_secret: str | None = None

    def __post_init__(self) -> None:
        from modelyard.deploy.kubernetes.manifests import _check_pair, check_name

        check_name(self.claim, "volume claim", subdomain=True)
        for what, value in (("shards", self.shards), ("parallelism", self.parallelism)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InvalidParameter(f"{what} must be at least 1 (got {value!r})")
        if not 0 <= self.retries_per_shard <= 10:
            raise InvalidParameter("retries per shard must be 0 to 10")
        for what, path in (("input path", self.input_path), ("output path", self.output_path)):
            clean = posixpath.normpath(path)
            if not path or path.startswith("/") or clean.startswith(".."):
                raise InvalidParameter(f"{what} {path!r} must stay inside the volume")
        _check_pair("cpu", self.cpu_request, self.cpu_limit)
        _check_pair("memory", self.memory_request, self.memory_limit)
        self.kube  # noqa: B018 - validates name, namespace, image and labels

    @property
    def kube(self) -> Any:
        from modelyard.deploy.kubernetes import KubeSpec

        return KubeSpec(
            name=self.name,
            namespace=self.namespace,
            image=self.image,
            model=self.model,
            version=self.version,
            replicas=1,
            labels=self.labels,
            image_pull_secret=self.image_pull_secret,
        )


def render_job(spec: JobSpec) -> dict[str, Any]:
    from modelyard.deploy.kubernetes.manifests import (
        IMAGE_PYTHON,
        common_annotations,
        common_labels,
        container_security_context,
        pod_security_context,
    )
    from modelyard.packaging.dockerfile import MODEL_DIR

    kube = spec.kube
    labels = {**common_labels(kube), "app.kubernetes.io/component": COMPONENT}
    command = [
        IMAGE_PYTHON,
        "-m",
        "modelyard.serving.batch",
        "--model-dir",
        MODEL_DIR,
        "--input",
        posixpath.join(DATA_MOUNT, posixpath.normpath(spec.input_path)),
        "--output",
        posixpath.join(DATA_MOUNT, posixpath.normpath(spec.output_path)),
        "--shards",
        str(spec.shards),
        "--batch-rows",
        str(spec.batch_rows),
    ]
    if spec.columns:
        command += ["--columns", ",".join(spec.columns)]
    container = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # retries are per index (backoffLimitPerIndex)
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": spec.claim}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if spec.image_pull_secret is not None:
        pod_spec["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": common_annotations(kube),
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.shards,
            "parallelism": spec.parallelism or spec.shards,
            "backoffLimitPerIndex": spec.retries_per_shard,
            "ttlSecondsAfterFinished": 86_400,
            "template": {
                "metadata": {"labels": labels, "annotations": common_annotations(kube)},
                "spec": pod_spec,
            },
        },
    }


def plan_job(
    model: str,
    data: str,
    *,
    output: str,
    claim: str,
    name: str | None = None,
    namespace: str = "default",
    shards: int = 1,
    parallelism: int | None = None,
    columns: Sequence[str] = (),
    batch_rows: int = 65_536,
    image: str | None = None,
    workspace: Workspace | None = None,
) -> dict[str, Any]:
    """The Job scoring ``data`` with ``model`` on a cluster. The input is expected on the claim
    at ``inputs/<dataset>/<version>/`` (``modelyard data checkout DATASET@V -o …``), the parts
    land in ``outputs/<output>/``. The image is the version's pushed image unless given."""
    from modelyard.data.resolve import resolve as resolve_dataset
    from modelyard.data.resolve import using_workspace
    from modelyard.errors import DeployError
    from modelyard.flavors.meta import Signature
    from modelyard.models import resolve
    from modelyard.packaging.dockerfile import lineage_labels
    from modelyard.refs import validate_name
    from modelyard.serving.batch import check_schema

    validate_name(output, "output dataset name")
    with using_workspace(workspace) as ws:
        version = resolve(model, ws)
        dataset = resolve_dataset(data, ws)
        if dataset.format not in ("parquet", "directory"):
            raise InvalidParameter(
                f"{dataset.ref} is {dataset.format}: Kubernetes shards split Parquet row groups; "
                "store the input as Parquet"
            )
        recorded = (dataset.schema or {}).get("columns")
        if recorded and version.signature:
            from modelyard.data.formats import recorded_schema

            check_schema(Signature.from_dict(version.signature), recorded_schema(recorded), columns)
        chosen = image or version.image_ref
        if chosen is None:
            raise DeployError(
                f"{version.ref} has no pushed image; a cluster pulls from a registry: modelyard "
                f"build {version.ref} && modelyard push {version.ref} --registry HOST/PATH"
            )
        spec = JobSpec(
            name=name or f"{version.name}-{version.version}-score".lower().replace("_", "-"),
            namespace=namespace,
            image=chosen,
            model=version.name,
            version=str(version.version),
            claim=claim,
            input_path=f"inputs/{dataset.name}/{dataset.version}",
            output_path=f"outputs/{output}",
            shards=shards,
            parallelism=parallelism,
            columns=tuple(columns),
            batch_rows=batch_rows,
            labels={**lineage_labels(ws, version), "io.modelyard/input": dataset.ref},
        )
    return render_job(spec)
