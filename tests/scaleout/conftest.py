"""Fixtures for the scale-out suite: blobs on a real S3 protocol endpoint.

``OMOPS_TEST_S3`` is the endpoint of the S3 server (moto's server mode) that
``scripts/test.sh`` starts on loopback for this run. Each test gets a bucket
of its own on it, and the standard AWS variables pointing there (the way a
deployment configures s3fs), so nothing is shared between tests or runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

#: Credentials moto accepts (it checks none); never real ones.
ACCESS_KEY = "omops-test-key"
SECRET_KEY = "omops-test-secret-do-not-log"
REGION = "us-east-1"


def s3_endpoint() -> str:
    url = os.environ.get("OMOPS_TEST_S3")
    if not url:
        pytest.fail(
            "OMOPS_TEST_S3 is not set: run the tests with `bash scripts/test.sh`, which starts "
            "an S3 server (moto) on loopback, or `source` the environment it prints"
        )
    return url


@dataclass(frozen=True)
class S3:
    """One test's bucket on the S3 server, and the variables that reach it."""

    endpoint: str
    bucket: str

    def url(self, prefix: str = "omops") -> str:
        return f"s3://{self.bucket}/{prefix}"

    @property
    def env(self) -> dict[str, str]:
        """What a process (client, worker, server) needs to reach the store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def fs(self):  # noqa: ANN201 - s3fs.S3FileSystem
        """A filesystem on the server that sees it as it is now (no listing cache)."""
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint,
            key=ACCESS_KEY,
            secret=SECRET_KEY,
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        return sorted(self.fs().find(f"{self.bucket}/{prefix}".rstrip("/")))

    def uploads(self) -> list[dict]:
        """Unfinished multipart uploads in the bucket."""
        page = self.fs().call_s3("list_multipart_uploads", Bucket=self.bucket)
        return list(page.get("Uploads") or [])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A fresh bucket; this process's AWS variables point at the test server."""
    store = S3(s3_endpoint(), f"omops-{uuid.uuid4().hex[:16]}")
    for name, value in store.env.items():
        monkeypatch.setenv(name, value)
    store.fs().mkdir(store.bucket)
    try:
        yield store
    finally:
        fs = store.fs()
        for upload in store.uploads():
            fs.call_s3(
                "abort_multipart_upload",
                Bucket=store.bucket,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
            )
        fs.rm(store.bucket, recursive=True)
