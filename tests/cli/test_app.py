"""The ``om`` command line, in-process through typer's CliRunner and as the real executable."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
from rich.status import Status
from sklearn.linear_model import LinearRegression
from typer.testing import CliRunner, Result

import omops
from omops.cli import _common
from omops.cli.app import app

OM = Path(sys.prefix) / "bin" / "om"
HOSTILE_NAMES = ["../etc/passwd", "/abs", "a//b", "a/./b", "x;rm -rf", "é"]


def om(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``om ARGS`` in-process, wide enough that tables do not truncate."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def assert_error(result: Result, *fragments: str, code: int = 1) -> None:
    """An omops error: exit status 1, one ``error:`` line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["EU", "US", "EU", "APAC"],
            "sales": [10, 200, 300, 50],
            "zip": ["01234", "99999", "01000", None],
        }
    )


@pytest.fixture
def sales_csv(tmp_path: Path, sales: pd.DataFrame) -> Path:
    path = tmp_path / "sales.csv"
    sales.to_csv(path, index=False)
    return path


@pytest.fixture
def sales_parquet(tmp_path: Path, sales: pd.DataFrame) -> Path:
    path = tmp_path / "sales.parquet"
    sales.to_parquet(path, index=False)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    model = LinearRegression().fit(np.arange(10.0).reshape(-1, 1), np.arange(10.0) * 2)
    path = tmp_path / "forecast.joblib"
    joblib.dump(model, path)
    return path


# -- global ------------------------------------------------------------------


def test_version() -> None:
    result = om("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"om (omops) {omops.__version__}"


def test_help_has_examples() -> None:
    result = om("--help")
    assert result.exit_code == 0
    for text in ("Examples", "om datasets put sales.csv stats", "datasets", "models", "config"):
        assert text in result.stdout


@pytest.mark.parametrize("group", ["datasets", "models"])
def test_store_help_lists_commands(group: str) -> None:
    result = om(group, "--help")
    assert result.exit_code == 0
    for command in ("list", "get", "put", "drop", "metadata", "revisions", "tag"):
        assert command in result.stdout


def test_command_help_has_examples() -> None:
    result = om("datasets", "get", "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "sales__gte=100" in result.stdout


def test_bad_usage_exits_2() -> None:
    assert om("datasets", "get").exit_code == 2
    assert om("datasets", "frobnicate").exit_code == 2
    assert om("datasets", "get", "x", "--limit", "-1").exit_code == 2


# -- datasets ------------------------------------------------------------------


def test_put_csv_then_list_and_get(sales_csv: Path, sales: pd.DataFrame) -> None:
    result = om("datasets", "put", str(sales_csv), "stats")
    assert result.exit_code == 0, result.output
    assert "stored datasets 'stats'" in result.stdout and "4 rows" in result.stdout

    listed = om("datasets", "list", "--json")
    assert [row["name"] for row in orjson.loads(listed.stdout)] == ["stats"]
    assert orjson.loads(listed.stdout)[0]["kind"] == "pandas.dataframe"
    assert "stats" in om("datasets", "list").stdout

    frame = omops.datasets.get("stats")
    pd.testing.assert_frame_equal(frame, pd.read_csv(sales_csv))
    shown = om("datasets", "get", "stats")
    assert shown.exit_code == 0
    assert "APAC" in shown.stdout and "300" in shown.stdout


def test_put_appends_by_default_and_replace_replaces(sales_csv: Path) -> None:
    assert om("datasets", "put", str(sales_csv), "stats").exit_code == 0
    assert om("datasets", "put", str(sales_csv), "stats").exit_code == 0
    assert len(omops.datasets.get("stats")) == 8
    assert om("datasets", "put", str(sales_csv), "stats", "--replace").exit_code == 0
    assert len(omops.datasets.get("stats")) == 4
    assert len(orjson.loads(om("datasets", "revisions", "stats", "--json").stdout)) == 3


def test_put_parquet_with_tags_and_attributes(sales_parquet: Path, sales: pd.DataFrame) -> None:
    result = om(
        "datasets",
        "put",
        str(sales_parquet),
        "prod/stats",
        "--tag",
        "v1",
        "-t",
        "q3",
        "--attribute",
        "owner=ana",
        "-a",
        "note=a=b",
    )
    assert result.exit_code == 0, result.output
    meta = orjson.loads(om("datasets", "metadata", "prod/stats", "--json").stdout)
    assert meta["attributes"] == {"owner": "ana", "note": "a=b"}
    assert meta["tags"] == ["latest", "q3", "v1"]
    assert meta["columns"] == ["region", "sales", "zip"]
    pd.testing.assert_frame_equal(omops.datasets.get("prod/stats@v1"), sales)


def test_put_json_file_as_python_json(tmp_path: Path) -> None:
    path = tmp_path / "conf.json"
    path.write_text('{"alpha": 0.5, "layers": [1, 2]}')
    assert om("datasets", "put", str(path), "conf").exit_code == 0
    assert omops.datasets.metadata("conf").kind == "python.json"
    result = om("datasets", "get", "conf")
    assert orjson.loads(result.stdout) == {"alpha": 0.5, "layers": [1, 2]}
    out = tmp_path / "out.json"
    assert om("datasets", "get", "conf", "-o", str(out)).exit_code == 0
    assert orjson.loads(out.read_bytes()) == {"alpha": 0.5, "layers": [1, 2]}


def test_format_option_overrides_extension(tmp_path: Path, sales: pd.DataFrame) -> None:
    path = tmp_path / "sales.data"
    sales.to_csv(path, index=False)
    assert om("datasets", "put", str(path), "stats").exit_code == 2
    assert om("datasets", "put", str(path), "stats", "--format", "csv").exit_code == 0
    assert om("datasets", "put", str(path), "stats", "--format", "xlsx").exit_code == 2


def test_put_compressed_and_tsv(tmp_path: Path, sales: pd.DataFrame) -> None:
    gz, tsv = tmp_path / "sales.csv.gz", tmp_path / "sales.tsv"
    sales.to_csv(gz, index=False)
    sales.to_csv(tsv, index=False, sep="\t")
    assert om("datasets", "put", str(gz), "gz").exit_code == 0
    assert om("datasets", "put", str(tsv), "tsv").exit_code == 0
    assert list(omops.datasets.get("tsv").columns) == ["region", "sales", "zip"]
    assert len(omops.datasets.get("gz")) == 4


@pytest.mark.parametrize("suffix", ["csv", "parquet", "json"])
def test_get_filtered_to_file(tmp_path: Path, sales: pd.DataFrame, suffix: str) -> None:
    omops.datasets.put(sales, "stats")
    out = tmp_path / f"high.{suffix}"
    result = om(
        "datasets",
        "get",
        "stats",
        "--filter",
        "sales__gte=100",
        "-f",
        "region__in=EU,US",
        "--columns",
        "region,sales",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows" in result.stdout
    read = {
        "csv": pd.read_csv,
        "parquet": pd.read_parquet,
        "json": lambda p: pd.read_json(p, orient="records"),
    }[suffix]
    expected = pd.DataFrame({"region": ["US", "EU"], "sales": [200, 300]})
    pd.testing.assert_frame_equal(read(out), expected)


def test_get_limit_and_table(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "get", "stats", "--limit", "2")
    assert result.exit_code == 0
    assert "US" in result.stdout and "APAC" not in result.stdout
    assert "2 of 4 rows" in result.stderr


def test_get_table_caps_rows() -> None:
    omops.datasets.put(pd.DataFrame({"x": range(_common.DISPLAY_ROWS + 10)}), "big")
    result = om("datasets", "get", "big")
    assert f"{_common.DISPLAY_ROWS} of {_common.DISPLAY_ROWS + 10} rows" in result.stderr
    assert str(_common.DISPLAY_ROWS - 1) in result.stdout
    assert str(_common.DISPLAY_ROWS) not in result.stdout


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (["zip=01234"], ["EU"]),  # text column: stays the string '01234'
        (["sales=200"], ["US"]),
        (["sales__between=50,200"], ["US", "APAC"]),
        (["region__nin=EU,US"], ["APAC"]),
        (["zip__isnull"], ["APAC"]),
        (["zip__notnull=false"], ["APAC"]),
        (["region__startswith=A"], ["APAC"]),
        (["sales__lt=100", "region=EU"], ["EU"]),
    ],
)
def test_filter_values(
    tmp_path: Path, sales: pd.DataFrame, spec: list[str], expected: list[str]
) -> None:
    omops.datasets.put(sales, "stats")
    out = tmp_path / "out.parquet"
    args = [arg for s in spec for arg in ("-f", s)]
    result = om("datasets", "get", "stats", *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(out)["region"]) == expected


def test_filter_on_columns_named_like_get_parameters(tmp_path: Path) -> None:
    frame = pd.DataFrame({"name": ["a", "b"], "revision": [1, 2], "columns": ["x", "y"]})
    omops.datasets.put(frame, "odd")
    out = tmp_path / "out.csv"
    result = om(
        "datasets",
        "get",
        "odd",
        "-f",
        "name=b",
        "-f",
        "revision=2",
        "-f",
        "columns=y",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).to_dict("records") == [{"name": "b", "revision": 2, "columns": "y"}]


@pytest.mark.parametrize("spec", ["sales", "=5", "__gte=5", "zip__isnull=maybe"])
def test_malformed_filter_is_usage_error(sales: pd.DataFrame, spec: str) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "get", "stats", "--filter", spec)
    assert result.exit_code == 2
    assert "--filter" in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus=1", "unknown column 'bogus'"),
        ("sales__near=3", "unknown operator 'near'"),
        ("sales__between=1", "between needs two values"),
        ("sales=null", "compares with None"),
        ("sales__contains=1", "text columns"),
        ("sales__gte=abc", "filter 'sales__gte': 'abc' is not a number, but column 'sales'"),
        ("sales__in=1,abc", "'abc' is not a number"),
        ("sales__between=1,x", "'x' is not a number"),
    ],
)
def test_bad_filter_is_an_omops_error(sales: pd.DataFrame, spec: str, message: str) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "get", "stats", "-f", spec)
    assert_error(result, message)
    for sql in ("SELECT", "read_parquet", "LINE 1", "$p0", "Conversion Error"):
        assert sql not in result.output


def test_unknown_name_is_one_error_line() -> None:
    for args in (
        ["datasets", "get", "nope"],
        ["datasets", "metadata", "nope"],
        ["datasets", "revisions", "nope"],
        ["datasets", "drop", "nope"],
        ["datasets", "tag", "nope", "a", "b"],
        ["models", "get", "nope", "-o", "x.joblib"],
    ):
        assert_error(om(*args), "'nope' does not exist")


def test_error_line_is_red_on_a_terminal() -> None:
    result = om("datasets", "get", "nope", env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 1
    assert "\x1b[" in result.stderr and "error: " in result.stderr


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_rejected_before_io(sales_csv: Path, name: str) -> None:
    for args in (
        ["datasets", "get", name],
        ["datasets", "metadata", name],
        ["datasets", "drop", name],
        ["datasets", "put", str(sales_csv), name],
        ["models", "drop", name],
    ):
        assert_error(om(*args), "invalid name")
    assert omops.datasets.list() == []


def test_hostile_bucket_and_tag_are_rejected(sales_csv: Path) -> None:
    assert_error(om("datasets", "list", "--bucket", "../x"), "invalid bucket")
    assert_error(om("datasets", "put", str(sales_csv), "s", "--tag", "a b"), "invalid tag")
    assert omops.datasets.list() == []


def test_buckets_are_separate(sales_csv: Path) -> None:
    assert om("datasets", "put", str(sales_csv), "stats", "--bucket", "dev").exit_code == 0
    assert orjson.loads(om("datasets", "list", "--json").stdout) == []
    dev = orjson.loads(om("datasets", "list", "--json", "-b", "dev").stdout)
    assert [row["name"] for row in dev] == ["stats"]
    empty = om("datasets", "list")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert "no datasets in bucket 'default'" in empty.stderr
    assert_error(om("datasets", "get", "stats"), "does not exist")


def test_list_pattern_and_kind(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "prod/a")
    omops.datasets.put(sales, "dev/b")
    omops.datasets.put({"k": 1}, "prod/conf")
    names = [r["name"] for r in orjson.loads(om("datasets", "list", "prod/*", "--json").stdout)]
    assert names == ["prod/a", "prod/conf"]
    by_kind = orjson.loads(om("datasets", "list", "--kind", "python.json", "--json").stdout)
    assert [r["name"] for r in by_kind] == ["prod/conf"]


def test_metadata_table_and_revisions_table(sales: pd.DataFrame) -> None:
    first = omops.datasets.put(sales, "stats").revision
    omops.datasets.put(sales, "stats")
    table = om("datasets", "metadata", "stats")
    assert table.exit_code == 0 and "pandas.dataframe" in table.stdout
    revisions = om("datasets", "revisions", "stats")
    assert first in revisions.stdout and "latest" in revisions.stdout
    old = orjson.loads(om("datasets", "metadata", f"stats@{first[:8]}", "--json").stdout)
    assert old["revision"] == first and old["rows"] == 4


def test_caret_reads_earlier_revisions(sales: pd.DataFrame) -> None:
    """omega-ml's name^ (one before the latest), name^^ ... wherever the CLI reads a name."""
    first = omops.datasets.put(sales, "stats", append=False).revision
    second = omops.datasets.put(sales.head(2), "stats", append=False).revision
    omops.datasets.put(sales.head(1), "stats", append=False)
    assert orjson.loads(om("datasets", "metadata", "stats^", "--json").stdout)["revision"] == second
    assert orjson.loads(om("datasets", "metadata", "stats^^", "--json").stdout)["rows"] == 4
    assert om("datasets", "tag", "stats", "^^", "first").exit_code == 0
    assert omops.datasets.metadata("stats@first").revision == first
    assert_error(om("datasets", "get", "stats^^^"), "3 revision(s) before")
    x = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    omops.datasets.put(x, "X", append=False)
    omops.models.put(LinearRegression().fit(x, [2.0, 4.0, 6.0]), "double")
    omops.models.put(LinearRegression().fit(x, [3.0, 6.0, 9.0]), "double")
    result = om("runtime", "model", "double^", "predict", "X")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == pytest.approx([2.0, 4.0, 6.0])


def test_tag_untag_and_read_by_tag(tmp_path: Path, sales: pd.DataFrame) -> None:
    first = omops.datasets.put(sales, "stats").revision
    omops.datasets.put(sales, "stats", append=False, tag="v2")
    result = om("datasets", "tag", "stats", first[:10], "production")
    assert result.exit_code == 0, result.output
    assert f"revision {first[:12]} as 'production'" in result.stdout
    revisions = orjson.loads(om("datasets", "revisions", "stats", "--json").stdout)
    assert revisions[0] == {"revision": first, "tags": ["production"]}
    assert om("datasets", "untag", "stats", "production").exit_code == 0
    assert_error(om("datasets", "untag", "stats", "latest"), "'latest' cannot be removed")
    assert_error(om("datasets", "tag", "stats", "ffffffff", "x"))


def test_drop(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "drop", "stats")
    assert result.exit_code == 0 and "dropped datasets 'stats'" in result.stdout
    assert omops.datasets.list() == []
    assert_error(om("datasets", "drop", "stats"), "does not exist")
    forced = om("datasets", "drop", "stats", "--force")
    assert forced.exit_code == 0 and "nothing dropped" in forced.stderr


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    empty, broken = tmp_path / "empty.csv", tmp_path / "broken.parquet"
    empty.write_text("")
    broken.write_bytes(b"not parquet at all")
    assert_error(om("datasets", "put", str(empty), "x"), "cannot read", "as csv")
    assert_error(om("datasets", "put", str(broken), "x"), "cannot read", "as parquet")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    assert_error(om("datasets", "put", str(bad_json), "x"), "as json")
    assert om("datasets", "put", str(tmp_path / "missing.csv"), "x").exit_code == 2


def test_unwritable_output_is_an_error(tmp_path: Path, sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    assert_error(
        om("datasets", "get", "stats", "-o", str(tmp_path / "no" / "such.csv")), "cannot write"
    )
    assert om("datasets", "get", "stats", "-o", str(tmp_path / "out.xlsx")).exit_code == 2
    assert om("datasets", "get", "stats", "--format", "csv").exit_code == 2  # needs --output
    assert om("datasets", "get", "stats", "--columns", " , ").exit_code == 2
    out = tmp_path / "out.data"
    assert om("datasets", "get", "stats", "-o", str(out), "--format", "parquet").exit_code == 0
    assert len(pd.read_parquet(out)) == 4
    omops.datasets.put({"a": 1}, "conf")
    assert_error(om("datasets", "get", "conf", "-o", str(tmp_path / "c.csv")), "use a .json")
    assert not list(tmp_path.glob(".tmp-*"))


def test_get_ndarray_as_npy(tmp_path: Path) -> None:
    omops.datasets.put(np.arange(6).reshape(2, 3), "arr")
    out = tmp_path / "arr.npy"
    assert om("datasets", "get", "arr", "-o", str(out)).exit_code == 0
    np.testing.assert_array_equal(np.load(out), np.arange(6).reshape(2, 3))
    assert orjson.loads(om("datasets", "get", "arr").stdout) == [[0, 1, 2], [3, 4, 5]]


def test_large_files_get_a_spinner(monkeypatch, sales_csv: Path, tmp_path: Path) -> None:
    monkeypatch.setattr(_common, "BUSY_BYTES", 0)
    with _common.busy("working", 10) as status:
        assert isinstance(status, Status)
    assert om("datasets", "put", str(sales_csv), "stats").exit_code == 0
    out = tmp_path / "out.parquet"
    assert om("datasets", "get", "stats", "-o", str(out)).exit_code == 0
    assert len(pd.read_parquet(out)) == 4


def test_small_files_get_no_spinner() -> None:
    with _common.busy("working", 10) as status:
        assert not isinstance(status, Status)
        status.update("still quiet")


def test_get_to_stdout(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    csv = om("datasets", "get", "stats", "-f", "sales__gte=100", "-o", "-")
    assert csv.exit_code == 0, csv.output
    assert csv.stdout == "region,sales,zip\nUS,200,99999\nEU,300,01000\n"
    assert "wrote 2 rows of datasets 'stats' to stdout" in csv.stderr
    as_json = om("datasets", "get", "stats", "--output", "-", "--format", "json", "-n", "1")
    assert orjson.loads(as_json.stdout) == [{"region": "EU", "sales": 10, "zip": "01234"}]
    parquet = om("datasets", "get", "stats", "-o", "-", "--format", "parquet")
    assert parquet.exit_code == 0, parquet.output
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(parquet.stdout_bytes)), sales)
    assert om("datasets", "get", "stats", "-o", "-", "--format", "xlsx").exit_code == 2
    assert not list(Path.cwd().glob("-")) and not list(Path.cwd().glob(".tmp-*"))


def test_get_other_kinds_to_stdout() -> None:
    omops.datasets.put({"a": [1, 2]}, "conf")
    omops.datasets.put(np.arange(4), "arr")
    assert orjson.loads(om("datasets", "get", "conf", "-o", "-").stdout) == {"a": [1, 2]}
    assert orjson.loads(om("datasets", "get", "arr", "-o", "-").stdout) == [0, 1, 2, 3]
    npy = om("datasets", "get", "arr", "-o", "-", "--format", "npy")
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.stdout_bytes)), np.arange(4))
    assert_error(om("datasets", "get", "conf", "-o", "-", "--format", "csv"), "--format json")


def test_empty_result_says_0_rows(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "get", "stats", "-f", "sales__gt=1000")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0 rows (columns: region, sales, zip)"
    empty = om("datasets", "get", "stats", "-f", "sales__gt=1000", "-o", "-")
    assert empty.stdout == "region,sales,zip\n" and "wrote 0 rows" in empty.stderr


def test_metadata_shows_no_internal_columns(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    named = sales.set_index(pd.Index(["a", "b", "c", "d"], name="key"))
    omops.datasets.put(named, "keyed")
    assert "__index_level_" in str(omops.datasets.metadata("stats").details)  # still stored
    for name, index in (("stats", []), ("keyed", ["key"])):
        table = om("datasets", "metadata", name)
        as_json = om("datasets", "metadata", name, "--json")
        assert table.exit_code == as_json.exit_code == 0, table.output
        assert "__index_level" not in table.stdout + as_json.stdout
        meta = orjson.loads(as_json.stdout)
        assert meta["index"] == index and meta["columns"] == ["region", "sales", "zip"]
        assert set(meta["dtypes"]) == {"region", "sales", "zip"}


@pytest.mark.parametrize(
    ("args", "flag", "python"),
    [
        (["other.csv", "stats"], "use --replace", "append=False"),
        (["sales.csv", "conf", "--kind", "python.json"], "--kind python.pickle", "kind="),
        (["link.json", "link"], "pass --kind python.json", "kind="),
    ],
)
def test_put_errors_name_cli_flags(
    tmp_path: Path, sales_csv: Path, args: list[str], flag: str, python: str
) -> None:
    assert om("datasets", "put", str(sales_csv), "stats").exit_code == 0
    pd.DataFrame({"other": [1]}).to_csv(tmp_path / "other.csv", index=False)
    (tmp_path / "link.json").write_text('"ftp://ana:s3cret@db/sales.csv"')  # a scheme no kind reads
    result = om("datasets", "put", str(tmp_path / args[0]), *args[1:])
    assert_error(result, flag)
    assert python not in result.stderr and "__index_level" not in result.stderr
    assert "s3cret" not in result.output


def test_get_errors_name_cli_flags(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    result = om("datasets", "get", "stats[sales]", "--columns", "region")
    assert_error(result, "drop --columns")
    assert "columns=" not in result.stderr


def test_python_messages_keep_python_words(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    with pytest.raises(omops.errors.InvalidData, match="append=False"):
        omops.datasets.put(pd.DataFrame({"other": [1]}), "stats")


def test_list_hides_internal_names_unless_all(sales: pd.DataFrame) -> None:
    omops.datasets.put(sales, "stats")
    omops.datasets.put(sales, "_experiments/exp/1/train")
    omops.datasets.put([1], "_temp/3f2a")
    omops.models.put({"C": 1}, "_experiments/exp/1/params")

    def names(*args: str) -> list[str]:
        result = om(*args, "--json")
        assert result.exit_code == 0, result.output
        return [row["name"] for row in orjson.loads(result.stdout)]

    assert names("datasets", "list") == ["stats"]
    assert names("datasets", "list", "--all") == ["_experiments/exp/1/train", "_temp/3f2a", "stats"]
    assert names("datasets", "list", "_temp/*", "--all") == ["_temp/3f2a"]
    assert names("models", "list") == []
    assert names("models", "list", "--all") == ["_experiments/exp/1/params"]
    assert "_temp" not in om("datasets", "list").stdout
    assert "_temp/3f2a" in om("datasets", "list", "--all").stdout
    assert orjson.loads(om("datasets", "get", "_temp/3f2a").stdout) == [1]


# -- models --------------------------------------------------------------------


def test_model_put_needs_pickle_flag(model_file: Path) -> None:
    result = om("models", "put", str(model_file), "forecast")
    assert result.exit_code == 2
    assert "runs any code" in result.stderr and "--pickle" in result.stderr
    assert omops.models.list() == []


def test_model_put_get_roundtrip(model_file: Path, tmp_path: Path) -> None:
    result = om(
        "models", "put", str(model_file), "forecast", "--pickle", "--tag", "prod", "-a", "owner=ana"
    )
    assert result.exit_code == 0, result.output
    assert "sklearn.joblib" in result.stdout
    meta = orjson.loads(om("models", "metadata", "forecast@prod", "--json").stdout)
    assert meta["kind"] == "sklearn.joblib" and meta["attributes"] == {"owner": "ana"}
    x = np.array([[3.0], [11.0]])
    for suffix, load in (("joblib", joblib.load), ("pkl", lambda p: pickle.loads(p.read_bytes()))):
        out = tmp_path / f"out.{suffix}"
        got = om("models", "get", "forecast", "--output", str(out))
        assert got.exit_code == 0, got.output
        np.testing.assert_allclose(load(out).predict(x), [6.0, 22.0])
    assert [r["name"] for r in orjson.loads(om("models", "list", "--json").stdout)] == ["forecast"]
    assert om("models", "drop", "forecast").exit_code == 0
    assert omops.models.list() == []


def test_model_pickle_needs_explicit_kind(tmp_path: Path) -> None:
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps({1, 2, 3}))
    assert_error(om("models", "put", str(path), "thing", "--pickle"), "no plugin stores")
    result = om("models", "put", str(path), "thing", "--pickle", "--kind", "python.pickle")
    assert result.exit_code == 0, result.output
    assert omops.models.get("thing") == {1, 2, 3}


def test_model_json_needs_no_flag(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text('{"alpha": 1}')
    assert om("models", "put", str(path), "params").exit_code == 0
    out = tmp_path / "out.json"
    assert om("models", "get", "params", "-o", str(out)).exit_code == 0
    assert orjson.loads(out.read_bytes()) == {"alpha": 1}


def test_model_get_to_stdout(model_file: Path) -> None:
    assert om("models", "put", str(model_file), "forecast", "--pickle").exit_code == 0
    omops.models.put({"alpha": 1}, "params")
    got = om("models", "get", "forecast", "-o", "-")
    assert got.exit_code == 0, got.output
    assert "to stdout as joblib" in got.stderr
    model = joblib.load(io.BytesIO(got.stdout_bytes))
    np.testing.assert_allclose(model.predict(np.array([[3.0]])), [6.0])
    pickled = om("models", "get", "forecast", "-o", "-", "--format", "pickle")
    assert isinstance(pickle.loads(pickled.stdout_bytes), LinearRegression)  # noqa: S301
    assert orjson.loads(om("models", "get", "params", "-o", "-").stdout) == {"alpha": 1}
    assert_error(om("models", "get", "forecast", "-o", "-", "--format", "json"), "--format joblib")


def test_model_put_errors_name_cli_flags(tmp_path: Path) -> None:
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps({1, 2, 3}))
    result = om("models", "put", str(path), "thing", "--pickle")
    assert_error(result, "pass --kind one of the kinds models accepts", "--kind python.pickle")
    assert "numpy.ndarray" not in result.stderr and "kind=" not in result.stderr


def test_model_errors(model_file: Path, tmp_path: Path) -> None:
    assert om("models", "get", "forecast").exit_code == 2  # --output is required
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x05garbage")
    assert_error(om("models", "put", str(garbage), "g", "--pickle"), "cannot load")
    om("models", "put", str(model_file), "forecast", "--pickle")
    assert_error(om("models", "get", "forecast", "-o", str(tmp_path / "f.json")), "use a .joblib")
    assert om("models", "get", "forecast", "-o", str(tmp_path / "f.onnx")).exit_code == 2


# -- config --------------------------------------------------------------------


def test_config_show_sources(tmp_path: Path, monkeypatch) -> None:
    home = Path(os.environ["OMOPS_HOME"])
    (home / "config.toml").write_text('bucket = "team"\n')
    monkeypatch.setenv("OMOPS_CATALOG", "postgresql://ana:s3cret@db:5432/omops")
    monkeypatch.setenv("OMOPS_BROKER", "amqp://guest:guest@rabbit//")
    result = om("config", "show", "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert set(report) == {
        "home",
        "catalog",
        "blobs",
        "broker",
        "bucket",
        "label",
        "memory_limit",
        "spill",
        "blobs_options",
        "secret_key",
        "monitor_webhook",
    }
    assert report["secret_key"] == {
        "value": None,
        "source": "default",
        "variable": "OMOPS_SECRET_KEY",
    }
    assert report["catalog"] == {
        "value": "postgresql://ana:***@db:5432/omops",
        "source": "env",
        "variable": "OMOPS_CATALOG",
    }
    assert report["broker"]["value"] == "amqp://guest:***@rabbit//"
    assert report["bucket"] == {"value": "team", "source": "file", "variable": "OMOPS_BUCKET"}
    assert report["blobs"]["source"] == "default"
    assert report["home"] == {"value": str(home), "source": "env", "variable": "OMOPS_HOME"}
    monkeypatch.setenv("OMOPS_SECRET_KEY", "the-key-itself")
    table = om("config", "show")
    assert "s3cret" not in table.output and "guest:guest" not in table.output
    assert "the-key-itself" not in table.output and "OMOPS_SECRET_KEY" in table.stdout
    assert "postgresql://ana:***@db:5432/omops" in table.stdout and "file" in table.stdout


def test_config_errors_are_one_line() -> None:
    (Path(os.environ["OMOPS_HOME"]) / "config.toml").write_text('colour = "red"\n')
    assert_error(om("config", "show"), "unknown key(s)")
    assert_error(om("datasets", "list"), "unknown key(s)")


# -- the real executable ---------------------------------------------------------


def run_om(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``om`` in a fresh process with its own OMOPS_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(home), COLUMNS="200")
    return subprocess.run(
        [str(OM), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_executable_end_to_end(tmp_path: Path, sales_csv: Path) -> None:
    assert OM.is_file(), f"{OM} is not installed: pip install -e '.[test]'"
    home = tmp_path / "home"

    put = run_om(home, "datasets", "put", str(sales_csv), "sales/eu", "--tag", "v1")
    assert put.returncode == 0, put.stderr
    assert "stored datasets 'sales/eu'" in put.stdout

    listed = run_om(home, "datasets", "list", "sales/*", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in orjson.loads(listed.stdout)] == ["sales/eu"]

    out = tmp_path / "out.parquet"
    got = run_om(home, "datasets", "get", "sales/eu", "--output", str(out))
    assert got.returncode == 0, got.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_csv(sales_csv))

    high = tmp_path / "high.csv"
    got = run_om(home, "datasets", "get", "sales/eu", "-f", "sales__gte=100", "-o", str(high))
    assert got.returncode == 0, got.stderr
    assert list(pd.read_csv(high)["sales"]) == [200, 300]

    meta = run_om(home, "datasets", "metadata", "sales/eu", "--json")
    assert meta.returncode == 0, meta.stderr
    parsed = orjson.loads(meta.stdout)
    assert parsed["name"] == "sales/eu" and parsed["rows"] == 4 and "v1" in parsed["tags"]

    assert run_om(home, "datasets", "put", str(sales_csv), "sales/eu", "--replace").returncode == 0
    revisions = run_om(home, "datasets", "revisions", "sales/eu", "--json")
    assert revisions.returncode == 0, revisions.stderr
    assert [r["tags"] for r in orjson.loads(revisions.stdout)] == [["v1"], ["latest"]]
    table = run_om(home, "datasets", "revisions", "sales/eu")
    assert parsed["revision"] in table.stdout

    dropped = run_om(home, "datasets", "drop", "sales/eu")
    assert dropped.returncode == 0, dropped.stderr
    assert orjson.loads(run_om(home, "datasets", "list", "--json").stdout) == []
    assert (home / "catalog.sqlite").is_file()  # it really used OMOPS_HOME


def test_executable_errors(tmp_path: Path, sales_csv: Path, model_file: Path) -> None:
    home = tmp_path / "home"
    assert run_om(home, "datasets", "put", str(sales_csv), "stats").returncode == 0

    for args, fragment in (
        (["datasets", "get", "nope"], "does not exist"),
        (["datasets", "get", "../../etc/passwd"], "invalid name"),
        (["datasets", "get", "stats", "-f", "bogus__gt=1"], "unknown column 'bogus'"),
    ):
        result = run_om(home, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert fragment in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""

    usage = run_om(home, "datasets", "get", "stats", "-f", "no-equals-sign")
    assert usage.returncode == 2 and "--filter" in usage.stderr
    refused = run_om(home, "models", "put", str(model_file), "forecast")
    assert refused.returncode == 2 and "--pickle" in refused.stderr

    version = run_om(home, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"om (omops) {omops.__version__}"
    config = run_om(home, "config", "show", "--json")
    assert orjson.loads(config.stdout)["home"] == {
        "value": str(home),
        "source": "env",
        "variable": "OMOPS_HOME",
    }
