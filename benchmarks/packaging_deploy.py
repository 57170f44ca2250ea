"""Packaging and deployment figures: cold build, rebuild for a new model version, image size,
time from ``deploy`` to the first answered request, and requests lost during a rollout (must
be 0) on the docker and local targets.

    python benchmarks/packaging_deploy.py [--base-image REF] [--requests-after 200]
        [--maintenance WORKSPACE]   # also report the maintenance example's image size
        [--builds-only]             # image figures only, no deployments

The cold build uses ``--no-cache`` semantics (every layer rebuilt, wheels already on the
host); the rebuild is a second model version with the same dependencies. Both builders run
side by side: Docker's (``modelyard build``) and the daemonless OCI writer (``modelyard build
--builder oci``, base read from the engine with ``docker save``), each with its size per layer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SERVE_BASE = "modelyard/base:py3.11-bookworm"  # modelyard.images.DEFAULT_BASE_TAG


def _rollout_loss(
    ws: object, target: str, refs: list[str], port: int, name: str
) -> dict[str, float]:
    from _deploy_helpers import Load
    from modelyard import deploy

    started = time.perf_counter()
    deploy.deploy(deploy.DeploySpec(refs[0], name, target=target, port=port, replicas=2),
                  workspace=ws)  # type: ignore[arg-type]  # fmt: skip
    ready = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}"
    with Load(url) as first:
        while first.ok == 0 and not first.failed:
            time.sleep(0.001)
    first_answer = time.perf_counter() - started
    with Load(url) as load:
        while load.ok < 50:
            time.sleep(0.01)
        t = time.perf_counter()
        deploy.deploy(deploy.DeploySpec(refs[1], name, target=target, port=port, replicas=2),
                      workspace=ws)  # type: ignore[arg-type]  # fmt: skip
        rollout = time.perf_counter() - t
        after = load.ok
        while load.ok < after + 50:
            time.sleep(0.01)
    deploy.stop(name, workspace=ws)  # type: ignore[arg-type]
    return {
        "deploy_ready_s": ready,
        "deploy_to_first_answer_s": first_answer,
        "rollout_s": rollout,
        "requests_during_rollout": float(load.ok + len(load.failed)),
        "requests_lost": float(len(load.failed)),
    }


def _docker_layers(tag: str) -> list[tuple[str, str]]:
    from modelyard.images import DockerEngine

    out = DockerEngine.from_env().run(
        ["history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", tag]
    )
    rows = []
    for line in reversed(out.stdout.decode().splitlines()):
        size, _, created_by = line.partition("\t")
        if size not in ("0B", "0"):
            rows.append((f"docker:   layer {created_by.strip()[:50]}", size))
    return rows


def _oci_builds(ws: object, refs: list[str], base: str) -> list[tuple[str, str]]:
    from modelyard.packaging.oci_build import build_oci_image

    cold = build_oci_image(refs[0], workspace=ws, base_image=base, no_cache=True)  # type: ignore[arg-type]
    warm = build_oci_image(refs[1], workspace=ws, base_image=base)  # type: ignore[arg-type]
    rows = [
        ("oci: cold build (no cache, base read with docker save)", f"{cold.build_seconds:.1f} s"),
        ("oci: rebuild for a new model version", f"{warm.build_seconds:.1f} s"),
        ("oci: image size (scikit-learn churn model)", f"{cold.size / 1e6:.0f} MB"),
    ]
    base_size = sum(layer.uncompressed_size for role, layer in cold.layers if role == "base")
    rows.append(("oci:   layer base", f"{base_size / 1e6:.1f} MB"))
    for role, layer in cold.layers:
        if role != "base":
            rows.append((f"oci:   layer {role}", f"{layer.uncompressed_size / 1e6:.1f} MB "
                         f"({layer.descriptor.size / 1e6:.1f} MB gzip)"))  # fmt: skip
    return rows


def main() -> None:
    from _deploy_helpers import register_churn
    from modelyard.deploy.probe import free_port
    from modelyard.images import build_base_image
    from modelyard.packaging import build_model_image
    from modelyard.workspace import Workspace

    parser = argparse.ArgumentParser()
    parser.add_argument("--base-image", default=SERVE_BASE)
    parser.add_argument("--maintenance", type=Path, default=None)
    parser.add_argument("--builds-only", action="store_true")
    args = parser.parse_args()
    if args.base_image == SERVE_BASE:
        build_base_image(SERVE_BASE)
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    rows: list[tuple[str, str]] = []
    try:
        ws, _ = Workspace.init(root / "bench", environ={})
        refs = register_churn(ws, 2)
        cold = build_model_image(refs[0], workspace=ws, base_image=args.base_image, no_cache=True)
        warm = build_model_image(refs[1], workspace=ws, base_image=args.base_image)
        rows += [
            ("docker: cold build (no cache, wheels on host)", f"{cold.info.build_seconds:.1f} s"),
            ("docker: rebuild for a new model version", f"{warm.info.build_seconds:.1f} s"),
            ("docker: image size (scikit-learn churn model)", f"{cold.size / 1e6:.0f} MB"),
        ]
        rows += _docker_layers(cold.tag)
        rows += _oci_builds(ws, refs, args.base_image)
        for target in () if args.builds_only else ("docker", "local"):
            result = _rollout_loss(ws, target, refs, free_port(), f"bench-{target}")
            rows += [
                (f"{target}: deploy (2 replicas) until ready", f"{result['deploy_ready_s']:.1f} s"),
                (f"{target}: deploy to first answered request",
                 f"{result['deploy_to_first_answer_s']:.1f} s"),  # fmt: skip
                (f"{target}: rollout to a new version", f"{result['rollout_s']:.1f} s"),
                (f"{target}: requests lost during the rollout",
                 f"{result['requests_lost']:.0f} of {result['requests_during_rollout']:.0f}"),
            ]  # fmt: skip
        if args.maintenance is not None:
            mws = Workspace.at(args.maintenance)
            image = build_model_image("maintenance@latest", workspace=mws,
                                      base_image=args.base_image)  # fmt: skip
            rows.append(("image size (maintenance example model)", f"{image.size / 1e6:.0f} MB"))
        ws.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
