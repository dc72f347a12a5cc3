"""The DuckDB databases of lazy frames: one Omega's, with its memory limit and spill folder."""

from __future__ import annotations

import pandas as pd
import pytest

from omops.errors import ConfigError
from omops.omega import Omega


def setting(om: Omega, name: str, *, stream: bool = False) -> str:
    with om.datasets.lazy.cursor(stream=stream) as cursor:
        return cursor.sql(f"SELECT current_setting('{name}')").fetchall()[0][0]


def test_memory_limit_and_spill_folder_come_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("OMOPS_MEMORY_LIMIT", "100mb")
    monkeypatch.setenv("OMOPS_SPILL", str(tmp_path / "spill"))
    om = Omega()
    assert om.settings.memory_limit == "100MB"
    for stream in (False, True):
        assert setting(om, "memory_limit", stream=stream) == "95.3 MiB"  # 100 MB as DuckDB counts
        folder = setting(om, "temp_directory", stream=stream)
        assert folder.startswith(str(tmp_path / "spill") + "/")
    assert setting(om, "threads", stream=True) == 1  # streamed reads: one row group ahead
    assert len(list((tmp_path / "spill").iterdir())) == 2
    om.close()
    assert list((tmp_path / "spill").iterdir()) == []


def test_each_omega_has_its_own_databases_bucket_views_share_them(tmp_path):
    first, second = Omega(home=tmp_path), Omega(home=tmp_path)
    assert first.datasets.lazy is first["dev"].datasets.lazy is first.models.lazy
    assert first.datasets.lazy is not second.datasets.lazy
    first.datasets.put(pd.DataFrame({"x": [1, 2]}), "xs")
    assert len(first.datasets.getl("xs")) == 2 and second.datasets.getl("xs").value["x"].sum() == 3
    first.close()
    second.close()


def test_a_spill_folder_that_cannot_be_made_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("OMOPS_SPILL", str(tmp_path / "file" / "spill"))
    om = Omega()
    om.datasets.put(pd.DataFrame({"x": [1]}), "xs")
    with pytest.raises(ConfigError, match="set OMOPS_SPILL"):
        om.datasets.getl("xs").to_pandas()


@pytest.mark.slow
def test_a_sort_larger_than_the_limit_spills_and_completes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMOPS_MEMORY_LIMIT", "64MB")
    om = Omega()
    rows = 4_000_000  # about 150 MB to sort
    frame = pd.DataFrame({"k": range(rows), "v": pd.Series(range(rows)).map("{:020d}".format)})
    om.datasets.put(frame, "wide")
    ordered = om.datasets.getl("wide").sort("k", ascending=False)
    assert [len(c) for c in ordered.iterchunks(1_000_000)] == [1_000_000] * 4
    assert ordered.limit(2).value["k"].tolist() == [rows - 1, rows - 2]
    om.close()
