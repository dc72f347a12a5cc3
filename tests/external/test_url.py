"""``url.dataset``: CSV, Parquet and JSON files at a URL, read when the dataset is.

Over a real HTTP server on loopback (started here), ``file://`` and S3 (the
moto server the test command starts, OMOPS_TEST_S3).
"""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest

from omops.errors import InvalidData, InvalidQuery, NotFound, StorageError

from .support import orders_frame

FILES = [
    "orders.csv",
    "orders.tsv",
    "orders.csv.gz",
    "orders.parquet",
    "orders.json",
    "orders.jsonl",
]


def want(**conditions) -> pd.DataFrame:
    frame = orders_frame().drop(columns=["at"])
    for column, test in conditions.items():
        frame = frame[test(frame[column])]
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("file", FILES)
def test_files_over_http_read_with_filters_and_columns(om, http, file):
    meta = om.datasets.put(f"{http.url}/{file}", "orders")
    assert meta.kind == "url.dataset" and meta.size == 0
    assert meta.details["format"] == file.split(".")[1].replace("tsv", "csv").replace(
        "jsonl", "json"
    )
    whole = om.datasets.get("orders")
    pd.testing.assert_frame_equal(whole, want(), check_dtype=False)
    got = om.datasets.get("orders[id,note]", amount__gt=150, region__in=["us"])
    expected = want(amount=lambda s: s > 150, region=lambda s: s == "us")[["id", "note"]]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    got = om.datasets.get("orders", columns=["region"], note__startswith="50%")
    assert got.to_dict("records") == [{"region": "eu"}]


def test_read_at_get_time_and_copy_snapshots(om, http, files):
    om.datasets.put(f"{http.url}/orders.parquet", "link")
    copy = om.datasets.put(f"{http.url}/orders.parquet", "snap", copy=True, region="us")
    assert copy.kind == "pandas.dataframe" and copy.rows == 40
    assert copy.attributes["copied_from"] == f"{http.url}/orders.parquet"
    pd.DataFrame({"id": [1], "region": ["x"], "amount": [0.5], "note": ["new"]}).to_parquet(
        files / "orders.parquet", index=False
    )
    assert om.datasets.get("link")["note"].tolist() == ["new"]
    assert len(om.datasets.get("snap")) == 40
    again = om.datasets.put(f"{http.url}/orders.parquet", "snap", copy=True)
    assert again.rows == 1 and len(om.datasets.revisions("snap")) == 2  # replaced, revisioned


def test_format_from_the_option_when_the_name_has_none(om, http):
    with pytest.raises(InvalidData, match="cannot tell the format.*format="):
        om.datasets.put(f"{http.url}/orders-export", "x")
    om.datasets.put(f"{http.url}/orders-export", "x", format="csv")
    assert len(om.datasets.get("x", region="eu")) == 80
    with pytest.raises(InvalidData, match="format='xml' is not one of csv, parquet, json"):
        om.datasets.put(f"{http.url}/orders-export", "x", format="xml")
    with pytest.raises(InvalidData, match=r"option\(s\) \['sep'\]"):
        om.datasets.put(f"{http.url}/orders.csv", "x", sep=";")


def test_file_urls(om, files):
    om.datasets.put(f"file://{files}/orders.parquet", "local")
    assert om.datasets.get("local", id__lte=2)["id"].tolist() == [1, 2]


def test_streamed_windows_count_after_filters(om, http):
    om.datasets.put(f"{http.url}/orders.csv", "orders")
    stream = om.datasets.stream("orders", filters={"region": "eu"}, offset=70, limit=50)
    assert stream.count() == 10
    assert sum(b.num_rows for b in stream.batches) == 10


def test_secrets_in_the_url_are_placeholders(om, http):
    with pytest.raises(InvalidData, match=r"literal secret in its parameter 'token'") as info:
        om.datasets.put(f"{http.url}/orders.csv?token=abc123", "x")
    assert "abc123" not in str(info.value)
    with pytest.raises(InvalidData, match="literal secret in its user info"):
        om.datasets.put("https://ana:pw123@example.com/x.csv", "x")
    om.datasets.put(f"{http.url}/orders.csv?token={{token}}", "x")
    with pytest.raises(NotFound, match=r"placeholder \{token\}"):
        om.datasets.get("x")
    token = uuid.uuid4().hex
    om.secrets.put("token", token)
    assert len(om.datasets.get("x")) == 120
    assert http.requests[-1].endswith(f"?token={token}")  # the server got it
    assert token not in str(om.datasets.metadata("x").kind_meta)


def test_what_cannot_be_read(om, http):
    om.datasets.put(f"{http.url}/missing.csv", "gone")
    with pytest.raises(StorageError, match="does not exist"):
        om.datasets.get("gone")
    (http.folder / "broken.parquet").write_bytes(b"not parquet at all")
    om.datasets.put(f"{http.url}/broken.parquet", "broken")
    with pytest.raises((InvalidData, StorageError), match="broken.parquet"):
        om.datasets.get("broken")
    om.datasets.put(f"{http.url}/orders.csv", "orders")
    with pytest.raises(InvalidQuery, match="unknown column 'nope'"):
        om.datasets.get("orders", nope=1)
    with pytest.raises(InvalidQuery, match="is not a number"):
        om.datasets.get("orders", amount__gt="lots")
    with pytest.raises(InvalidData, match=r"scheme 'ftp' cannot be read.*https://"):
        om.datasets.put("ftp://host/x.csv", "ftp")


def test_s3_with_credentials_from_secrets(om, files):
    import s3fs

    endpoint = os.environ["OMOPS_TEST_S3"]
    bucket = f"omops-url-{uuid.uuid4().hex[:8]}"
    fs = s3fs.S3FileSystem(key="k", secret="s", client_kwargs={"endpoint_url": endpoint})
    fs.mkdir(bucket)
    fs.put(str(files / "orders.parquet"), f"{bucket}/data/orders.parquet")
    options = {"key": "{aws_key}", "secret": "{aws_secret}", "endpoint_url": endpoint}
    with pytest.raises(InvalidData, match=r"storage_options\['secret'\]"):
        om.datasets.put(
            f"s3://{bucket}/data/orders.parquet", "s3", storage_options={**options, "secret": "s"}
        )
    om.datasets.put(f"s3://{bucket}/data/orders.parquet", "s3", storage_options=options)
    got = om.datasets.get("s3", region="us", secrets={"aws_key": "k", "aws_secret": "s"})
    assert len(got) == 40
    fs.rm(bucket, recursive=True)
