"""Unfinished multipart uploads on object stores: found and aborted by the sweep.

A blob larger than the filesystem's block size (s3fs: 50 MiB by default) is
sent to ``tmp/`` as an S3 multipart upload. Until the upload is completed the
object does not exist: no reader can see half of it. A writer killed in the
middle (SIGKILL, a lost machine) leaves the upload open, though, and S3 keeps
(and bills) its parts until it is aborted. :meth:`omops.blobs.Blobs.temporaries`
lists such uploads under ``tmp/`` by their age (the time they were started),
and :meth:`~omops.blobs.Blobs.remove` aborts them.

Google Cloud Storage (resumable uploads) and Azure Blob Storage (uncommitted
blocks) discard unfinished uploads themselves after about a week; nothing to
sweep there.

An unfinished upload is named ``<bucket>/<key>#upload=<upload id>`` here, a
name that is never a file's: ``#`` is not in the names omops writes.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

__all__ = ["abort", "is_upload", "pending"]

_MARK = "#upload="


def _supports(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "s3" in protocols and hasattr(fs, "call_s3")


def is_upload(path: str) -> bool:
    """Whether ``path`` names an unfinished upload (see :func:`pending`)."""
    return _MARK in path


def pending(fs: Any, folder: str, older_than: float) -> list[tuple[str, int]]:
    """``(name, bytes uploaded)`` of unfinished uploads under ``folder`` started
    at least ``older_than`` seconds ago; ``[]`` where the filesystem has none."""
    if not _supports(fs):
        return []
    bucket, _, prefix = folder.strip("/").partition("/")
    prefix = f"{prefix}/" if prefix else ""
    now, found, markers = time.time(), [], {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads") or ():
            started = upload.get("Initiated")
            age = now - started.timestamp() if isinstance(started, dt.datetime) else 0.0
            if age >= older_than:
                name = f"{bucket}/{upload['Key']}{_MARK}{upload['UploadId']}"
                found.append((name, _uploaded(fs, bucket, upload["Key"], upload["UploadId"])))
        if not page.get("IsTruncated"):
            return sorted(found)
        markers = {
            "KeyMarker": page.get("NextKeyMarker", ""),
            "UploadIdMarker": page.get("NextUploadIdMarker", ""),
        }


def _uploaded(fs: Any, bucket: str, key: str, upload_id: str) -> int:
    try:
        parts = fs.call_s3("list_parts", Bucket=bucket, Key=key, UploadId=upload_id)
    except (FileNotFoundError, OSError):  # finished or aborted meanwhile
        return 0
    return sum(int(p.get("Size") or 0) for p in parts.get("Parts") or ())


def abort(fs: Any, name: str) -> None:
    """Abort the unfinished upload ``name``; one already gone is not an error."""
    path, _, upload_id = name.partition(_MARK)
    bucket, _, key = path.partition("/")
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # completed or aborted meanwhile (NoSuchUpload)
        pass
