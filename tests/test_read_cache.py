"""The read cache: small DataFrames read again come from memory, as new objects.

The cache keeps the Arrow table (immutable) and builds a new DataFrame per
read, so nothing a reader changes, nested values inside cells included,
reaches the next reader.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from omops.errors import ConfigError, NotFound
from omops.omega import Omega
from omops.plugins.pandas import DataFramePlugin
from omops.readcache import ReadCache


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Kinds whose blobs were read, in order (each call of a DataFrame plugin's read_table)."""
    seen: list[str] = []
    original = DataFramePlugin.read_table

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(self.kind)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DataFramePlugin, "read_table", counting)
    return seen


def sales(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"sales": np.arange(n) * 10, "x": np.linspace(0, 1, n)})


def test_a_second_read_comes_from_memory_and_equals_the_first(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(), "stats")
    first = om.datasets.get("stats")
    second = om.datasets.get("stats")
    assert reads == ["pandas.dataframe"]
    pd.testing.assert_frame_equal(first, sales())
    pd.testing.assert_frame_equal(second, sales())


def test_changing_what_was_read_changes_no_later_read(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(), "stats")
    first = om.datasets.get("stats")
    first.loc[0, "sales"] = -1
    first["new"] = 1
    second = om.datasets.get("stats")
    second.iloc[1, 0] = -2
    pd.testing.assert_frame_equal(om.datasets.get("stats"), sales())
    assert reads == ["pandas.dataframe"]


def test_a_new_revision_is_read_at_once(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(3), "stats")
    assert len(om.datasets.get("stats")) == 3
    om.datasets.put(sales(3), "stats", append=True)
    assert len(om.datasets.get("stats")) == 6
    om.datasets.put(sales(2), "stats", append=False)
    assert len(om.datasets.get("stats")) == 2
    first = om.datasets.revisions("stats")[0][0]
    assert len(om.datasets.get(f"stats@{first}")) == 3  # old revisions stay readable
    assert len(reads) == 3  # ... and the first was read before


def test_a_dropped_dataset_is_gone_though_it_was_read(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(), "stats")
    om.datasets.get("stats")
    om.datasets.drop("stats")
    with pytest.raises(NotFound):
        om.datasets.get("stats")


def test_column_selections_are_kept_apart(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(), "stats")
    assert list(om.datasets.get("stats[sales]").columns) == ["sales"]
    assert list(om.datasets.get("stats[^sales]").columns) == ["x"]
    assert list(om.datasets.get("stats").columns) == ["sales", "x"]
    assert list(om.datasets.get("stats", columns=["x"]).columns) == ["x"]
    assert len(reads) == 4
    for name in ("stats[sales]", "stats[^sales]", "stats"):
        om.datasets.get(name)
    assert len(reads) == 4


def test_filtered_reads_always_read(om: Omega, reads: list[str]) -> None:
    om.datasets.put(sales(), "stats")
    for _ in range(2):
        assert om.datasets.get("stats", sales__gte=20)["sales"].tolist() == [20, 30, 40]
    assert len(reads) == 2


def test_series_are_copied_too(om: Omega, reads: list[str]) -> None:
    om.datasets.put(pd.Series([1.0, 2.0], name="s"), "series")
    first = om.datasets.get("series")
    first.iloc[0] = 99.0
    assert om.datasets.get("series").tolist() == [1.0, 2.0]
    assert reads == ["pandas.series"]


def test_large_blobs_are_not_kept(om: Omega, reads: list[str], monkeypatch) -> None:
    monkeypatch.setattr(om.context.reads, "max_blob_bytes", 10)
    om.datasets.put(sales(), "stats")
    om.datasets.get("stats")
    om.datasets.get("stats")
    assert len(reads) == 2


def test_each_omega_has_its_own_cache(tmp_path, reads: list[str]) -> None:
    one, two = Omega(home=str(tmp_path)), Omega(home=str(tmp_path))
    one.datasets.put(sales(), "stats")
    one.datasets.get("stats")
    two.datasets.get("stats")  # another Omega reads the blob itself
    one["dev"].datasets.put(sales(), "stats")
    one["dev"].datasets.get("stats")
    one["dev"].datasets.get("stats")  # bucket views share their Omega's cache
    assert reads == ["pandas.dataframe"] * 3
    assert one["dev"].context is one.context and two.context is not one.context


def test_the_cache_stays_within_its_bounds() -> None:
    table = pa.table({"a": np.zeros(100)})  # 800 bytes of data
    size = table.get_total_buffer_size()
    cache = ReadCache(max_bytes=3 * size, max_object_bytes=size)
    for i in range(5):
        cache.get(("k", i), lambda: table, small=True)
    calls: list[int] = []

    def read(i: int) -> pa.Table:
        calls.append(i)
        return table

    for i in range(5):
        cache.get(("k", i), lambda i=i: read(i), small=True)
    assert calls == [0, 1, 2, 3, 4]  # the 3 newest were kept, then pushed out in turn
    assert len(cache) == 3 and cache.bytes <= 3 * size
    cache.get(("big",), lambda: pa.table({"a": np.zeros(200)}), small=True)
    assert ("big",) not in cache._items  # over max_object_bytes
    cache.get(("not small",), lambda: table, small=False)
    assert ("not small",) not in cache._items


def test_the_size_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OMOPS_READ_CACHE_MB", "0")
    cache = ReadCache(None)
    cache.get(("k",), lambda: pa.table({"a": [1.0]}), small=True)
    assert len(cache) == 0  # 0 turns the cache off
    monkeypatch.setenv("OMOPS_READ_CACHE_MB", "0.5")
    assert ReadCache(None).max_bytes == 2**19


@pytest.mark.parametrize("text", ["lots", "-1", "nan"])
def test_a_bad_size_is_a_clear_error(monkeypatch, text: str) -> None:
    monkeypatch.setenv("OMOPS_READ_CACHE_MB", text)
    with pytest.raises(ConfigError, match="OMOPS_READ_CACHE_MB"):
        ReadCache(None).get(("k",), lambda: pa.table({"a": [1.0]}), small=True)


def nested() -> pd.DataFrame:
    """Struct, list and list-of-struct cells: what a deep copy of a frame still shares."""
    return pd.DataFrame(
        {
            "meta": [{"a": 1, "tags": ["x", "y"]}, {"a": 2, "tags": []}],
            "values": [[1.0, 2.0], [3.0]],
            "events": [[{"t": 1, "kind": "open"}], []],
            "plain": [1.5, 2.5],
            "text": ["one", "two"],
        }
    )


def snapshot(frame: pd.DataFrame) -> list:
    """The frame's values as plain Python, deeply (arrays as lists)."""

    def plain(value):  # noqa: ANN202
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [plain(v) for v in value]
        return value

    return [plain(row) for row in frame.to_dict(orient="records")]


def mutate_everything(frame: pd.DataFrame) -> None:
    """Change every value a reader could reach, in place where Python lets it."""
    meta = frame.loc[0, "meta"]
    meta["a"] = 99
    meta["new"] = "key"
    meta["tags"] = ["changed"]
    events = frame.loc[0, "events"]
    for event in events:
        event["kind"] = "changed"
    for cell in (frame.loc[0, "values"], events):
        try:
            cell[0] = 99  # NumPy arrays read from Arrow are read-only views
        except (ValueError, TypeError):
            pass
    frame.loc[1, "plain"] = -1.0
    frame.loc[1, "text"] = "changed"
    frame["added"] = 1


def test_changing_nested_values_changes_no_later_read(om: Omega, reads: list[str]) -> None:
    """After ``df.loc[0, 'meta']['a'] = 99`` a deep copy handed out {'a': 99} next time."""
    om.datasets.put(nested(), "nested")
    first = om.datasets.get("nested")
    want = snapshot(first)
    assert want[0]["meta"] == {"a": 1, "tags": ["x", "y"]}
    mutate_everything(first)
    assert first.loc[0, "meta"]["a"] == 99
    second = om.datasets.get("nested")
    assert snapshot(second) == want
    mutate_everything(second)
    assert snapshot(om.datasets.get("nested")) == want
    assert snapshot(om.datasets.get("nested[meta,events]")) == [
        {"meta": row["meta"], "events": row["events"]} for row in want
    ]
    assert reads == ["pandas.dataframe", "pandas.dataframe"]  # both selections from memory


def test_changing_a_read_series_changes_no_later_read(om: Omega, reads: list[str]) -> None:
    om.datasets.put(pd.Series([{"a": 1}, {"a": 2}], name="s"), "structs")
    first = om.datasets.get("structs")
    first.iloc[0]["a"] = 99
    assert om.datasets.get("structs").tolist() == [{"a": 1}, {"a": 2}]
    assert reads == ["pandas.series"]


def test_flat_frames_are_kept_as_copies_nested_ones_as_tables(om: Omega) -> None:
    """A deep copy is safe (and ~10x cheaper than building a frame) when no cell holds a
    Python object; otherwise the Arrow table is kept and each read builds from it."""
    om.datasets.put(sales(), "flat")
    om.datasets.put(nested(), "nested")
    for name in ("flat", "nested", "flat", "nested"):
        om.datasets.get(name)
    kept = {key[3]: entry for key, entry in om.context.reads._items.items()}
    flat, deep = (om.datasets.metadata(n).revision for n in ("flat", "nested"))
    assert isinstance(kept[flat][0], pd.DataFrame) and kept[flat][2]
    assert isinstance(kept[deep][0], pa.Table) and not kept[deep][2]
    first = om.datasets.get("flat")
    first.iloc[0, 0] = -1
    pd.testing.assert_frame_equal(om.datasets.get("flat"), sales())
