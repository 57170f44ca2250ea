"""Helpers of the artifact bucket tests: the S3 protocol server ``scripts/services.sh`` starts
(moto_server on 127.0.0.1:5002, or ``MODELYARD_TEST_S3_ENDPOINT``), its credentials, and bucket
listings. The fixtures (``s3``, ``bucket``, ``s3_workspace``) are in conftest.py."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

S3_ENDPOINT = os.environ.get("MODELYARD_TEST_S3_ENDPOINT", "http://127.0.0.1:5002")
AWS = {
    "AWS_ENDPOINT_URL": S3_ENDPOINT,
    "AWS_ACCESS_KEY_ID": "modelyard-test",
    "AWS_SECRET_ACCESS_KEY": "modelyard-test-secret",
    "AWS_REGION": "us-east-1",
}


def reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def s3_client(endpoint: str = S3_ENDPOINT) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )


def empty_bucket(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def s3_env(bucket: str, prefix: str = "team/artifacts", **extra: str) -> dict[str, str]:
    return {"MODELYARD_ARTIFACTS_URL": f"s3://{bucket}/{prefix}", **AWS, **extra}


def keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
