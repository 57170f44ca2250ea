"""The image contract is one set of facts: the runtime's settings, the Dockerfile and the
Kubernetes manifests all read them from modelyard.image_contract (the pod test runs them)."""

from __future__ import annotations

from pathlib import Path

from modelyard import image_contract as contract
from modelyard.deploy.kubernetes import KubeSpec, render_manifests
from modelyard.images import ImageSpec, render_dockerfile
from modelyard.serving.config import ServeConfig


def test_the_runtime_reads_the_contract_environment() -> None:
    config = ServeConfig.from_env(
        {contract.LOG_DIR_ENV: "/mnt/log", contract.AUTH_URL_ENV: "http://team:5500"}
    )
    assert config.log_dir == Path("/mnt/log")
    assert config.auth_url == "http://team:5500"
    assert set(ServeConfig(log_dir=Path("/x")).to_env()) >= {contract.LOG_DIR_ENV}


def test_the_manifest_logs_predictions_on_a_volume_where_the_image_would() -> None:
    (deployment, *_) = render_manifests(
        KubeSpec(name="churn", namespace="ml", image="reg/churn:1", model="churn", version="1")
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env[contract.LOG_DIR_ENV] == contract.PREDICTION_LOG_DIR
    assert mounts == {contract.PREDICTION_LOG_DIR, *contract.SCRATCH_DIRS}
    assert container["ports"][0]["containerPort"] == contract.PORT
    assert container["securityContext"]["runAsUser"] == contract.UID
    assert container["readinessProbe"]["httpGet"]["path"] == contract.READY_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == contract.LIVE_PATH
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == contract.PYTHON


def test_the_dockerfile_names_the_log_folder_by_environment() -> None:
    text = render_dockerfile(
        ImageSpec(
            env={contract.LOG_DIR_ENV: contract.PREDICTION_LOG_DIR},
            entrypoint=("python", "-m", "modelyard.serving"),
            expose=(contract.PORT,),
        ),
        labels={},
    )
    assert f'ENV {contract.LOG_DIR_ENV}="{contract.PREDICTION_LOG_DIR}"' in text
    assert f"COPY --from=deps {contract.VENV} {contract.VENV}" in text
    assert f"USER {contract.UID}:{contract.GID}" in text
    assert f"EXPOSE {contract.PORT}" in text
