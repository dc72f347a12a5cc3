"""Unfinished multipart uploads on object stores: found and aborted by the sweep.

A blob larger than the filesystem's block size (s3fs: 50 MiB by default) is
sent to ``tmp/`` as an S3 multipart upload. Until the upload is completed the
object does not exist: no reader can see half of it. A writer killed in the
middle (SIGKILL, a lost machine) leaves the upload open, though, and S3 keeps
(and bills) its parts until it is aborted. :meth:`omops.blobs.Blobs.temporaries`
lists such uploads under ``tmp/`` by their age, counted like a file's from its
last change: from the newest part's upload (or the start, before any part), so
a slow writer still sending parts keeps its upload; and
:meth:`~omops.blobs.Blobs.remove` aborts them. (moto, the S3 server of the
tests, reports a fixed start time of 2010: there only the parts' times tell.)

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
    """``(name, bytes uploaded)`` of unfinished uploads under ``folder`` with no
    activity for ``older_than`` seconds; ``[]`` where the filesystem has none."""
    if not _supports(fs):
        return []
    bucket, _, prefix = folder.strip("/").partition("/")
    prefix = f"{prefix}/" if prefix else ""
    now, found, markers = time.time(), [], {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads") or ():
            size, changed = _parts(fs, bucket, upload["Key"], upload["UploadId"])
            started = upload.get("Initiated")
            if isinstance(started, dt.datetime):
                changed = max(changed, started.timestamp())
            if changed and now - changed >= older_than:
                found.append((f"{bucket}/{upload['Key']}{_MARK}{upload['UploadId']}", size))
        if not page.get("IsTruncated"):
            return sorted(found)
        markers = {
            "KeyMarker": page.get("NextKeyMarker", ""),
            "UploadIdMarker": page.get("NextUploadIdMarker", ""),
        }


def _parts(fs: Any, bucket: str, key: str, upload_id: str) -> tuple[int, float]:
    """Bytes uploaded so far, and when the newest part arrived (0: no part, or gone)."""
    size, newest, markers = 0, 0.0, {}
    while True:
        try:
            page = fs.call_s3("list_parts", Bucket=bucket, Key=key, UploadId=upload_id, **markers)
        except FileNotFoundError:  # finished or aborted meanwhile
            return 0, 0.0
        for part in page.get("Parts") or ():
            size += int(part.get("Size") or 0)
            when = part.get("LastModified")
            if isinstance(when, dt.datetime):
                newest = max(newest, when.timestamp())
        if not page.get("IsTruncated"):
            return size, newest
        markers = {"PartNumberMarker": page.get("NextPartNumberMarker", 0)}


def abort(fs: Any, name: str) -> None:
    """Abort the unfinished upload ``name``; one already gone is not an error."""
    path, _, upload_id = name.partition(_MARK)
    bucket, _, key = path.partition("/")
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # completed or aborted meanwhile (NoSuchUpload)
        pass
