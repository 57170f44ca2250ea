#!/bin/sh
# Regenerate the committed protobuf modules of the V2 gRPC endpoint from the .proto.
# The protobuf runtime must be at least the version protoc embeds (see pyproject's serve extra).
set -eu
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
    src/modelyard/serving/_proto/grpc_predict_v2.proto
.venv/bin/ruff format --quiet src/modelyard/serving/_proto/
