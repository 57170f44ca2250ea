"""The model image contract: what every image modelyard builds offers the platform running it.

One place for the facts the Dockerfile renderer (:mod:`modelyard.images.context`,
:mod:`modelyard.packaging.dockerfile`), the deploy targets (:mod:`modelyard.deploy.docker`,
:mod:`modelyard.deploy.kubernetes.manifests`) and the runtime inside the image agree on:

========================  ==================================  =================================
fact                      value                               who relies on it
========================  ==================================  =================================
``PORT``                  8080                                EXPOSE, replicas' ``-p``, pods'
                                                              ``containerPort``, proxy backends
``USER`` / ``UID``        ``modelyard`` / 10001 (group too)   ``USER``, ``runAsUser``
``VENV`` / ``PYTHON``     ``/opt/modelyard/venv``             pods' ``preStop`` exec
``APP_DIR``               ``/opt/modelyard/app``              payload (model, step code)
``MODEL_DIR``             ``/opt/modelyard/app/model``        ``--model-dir`` of the entrypoint
``PREDICTION_LOG_DIR``    ``/home/modelyard/predictions``     ``ENV MODELYARD_SERVE_LOG_DIR``,
                                                              Docker's host folder mount, the
                                                              pods' emptyDir mount
``SCRATCH_DIRS``          ``/tmp``                            the only other place written:
                                                              an emptyDir under a read-only root
``LIVE_PATH``             ``/v2/health/live``                 startup and liveness probes
``READY_PATH``            ``/v2/health/ready``                HEALTHCHECK, readiness probes,
                                                              HAProxy checks, rollout waits
``METRICS_PATH``          ``/metrics``                        Prometheus scrape annotations
========================  ==================================  =================================

The image names its prediction-log folder with ``ENV MODELYARD_SERVE_LOG_DIR`` (``LOG_DIR_ENV``)
rather than a command-line flag, so whoever runs it can move the log by setting that variable: a
pod with a read-only root filesystem mounts an emptyDir and points the variable at it.

Plain constants and nothing else: the serving runtime, the build tools and the deploy targets
all import this module without loading anything heavy.
"""

from __future__ import annotations

PORT = 8080
USER = "modelyard"
UID = 10001
GID = UID
HOME = f"/home/{USER}"
ROOT = "/opt/modelyard"
VENV = f"{ROOT}/venv"
PYTHON = f"{VENV}/bin/python"
APP_DIR = f"{ROOT}/app"
MODEL_DIR = f"{APP_DIR}/model"
# The image's CycloneDX SBOM (modelyard.packaging.sbom), beside the model.
SBOM_FILE = "sbom.cdx.json"
SBOM_PATH = f"{APP_DIR}/{SBOM_FILE}"
PREDICTION_LOG_DIR = f"{HOME}/predictions"
SCRATCH_DIRS = ("/tmp",)

# Environment the entrypoint reads (modelyard.serving.config.ServeConfig.from_env).
ENV_PREFIX = "MODELYARD_SERVE_"
LOG_DIR_ENV = f"{ENV_PREFIX}LOG_DIR"
AUTH_URL_ENV = f"{ENV_PREFIX}AUTH_URL"

# SageMaker's bring-your-own-container contract: ``docker run IMAGE serve``; GET /ping and
# POST /invocations on PORT, or on this variable's port when SageMaker sets it.
SAGEMAKER_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
SAGEMAKER_ARG = "serve"
# Where the prediction log goes under ``serve`` when its folder cannot be written (a read-only
# root with a scratch /tmp): SageMaker's instances give no other writable place.
SAGEMAKER_LOG_DIR = "/tmp/modelyard-predictions"

LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"

# After SIGTERM the server stops accepting work and drains in-flight requests for up to this
# long (modelyard.serving.config.ServeConfig.graceful_timeout_s).
GRACE_S = 30
