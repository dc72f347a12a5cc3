"""``om.jobs``: notebooks stored from paths and objects, made from code, exported."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from omops.errors import InvalidData, NotFound
from omops.omega import Omega

from .support import notebook


@pytest.fixture
def om(tmp_path: Path) -> Omega:
    instance = Omega(home=str(tmp_path / "home"))
    yield instance
    instance.close()


def test_put_a_path_or_an_object_get_a_notebook_node(om: Omega, tmp_path: Path) -> None:
    path = tmp_path / "analysis.ipynb"
    nbformat.write(notebook("x = 1", "print(x)"), str(path))
    meta = om.jobs.put(str(path), "analysis")
    assert meta.kind == "notebook.ipynb"
    assert meta.details == {"cells": 2, "kernel": "python3", "language": "python"}
    got = om.jobs.get("analysis")
    assert isinstance(got, nbformat.NotebookNode)
    assert [c.source for c in got.cells] == ["x = 1", "print(x)"]
    # A Path, a NotebookNode and a plain dict (json.load of a file) work alike.
    om.jobs.put(path, "from-path")
    om.jobs.put(notebook("y = 2"), "analysis")
    om.jobs.put(json.loads(path.read_text()), "from-dict")
    assert om.jobs.get("analysis").cells[0].source == "y = 2"
    assert om.jobs.get("from-dict").cells[1].source == "print(x)"
    assert len(om.jobs.revisions("analysis")) == 2
    assert om.jobs.get(f"analysis@{meta.revision[:8]}").cells[0].source == "x = 1"
    assert om.jobs.list() == ["analysis", "from-dict", "from-path"]
    assert om.jobs.drop("from-path") and not om.jobs.exists("from-path")


def test_an_old_notebook_without_cell_ids_is_upgraded(om: Omega, tmp_path: Path) -> None:
    old = {
        "cells": [
            {
                "cell_type": "code",
                "source": "1",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(old))
    om.jobs.put(str(path), "old")
    assert om.jobs.get("old").cells[0].source == "1"


def test_paths_that_are_not_notebooks_are_refused(om: Omega, tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="does not exist; give the path of a .ipynb file"):
        om.jobs.put(str(tmp_path / "missing.ipynb"), "x")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(InvalidData, match="is not a Jupyter notebook"):
        om.jobs.put(str(broken), "x")
    invalid = tmp_path / "invalid.ipynb"
    invalid.write_text(
        json.dumps(
            {
                "cells": [{"cell_type": "nope", "id": "a", "metadata": {}, "source": ""}],
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
            }
        )
    )
    with pytest.raises(InvalidData, match="not valid nbformat 4"):
        om.jobs.put(str(invalid), "x")
    script = tmp_path / "script.py"
    script.write_text("print(1)")
    with pytest.raises(InvalidData, match=r"om.jobs stores notebooks: give the path of a .ipynb"):
        om.jobs.put(str(script), "x")
    assert om.jobs.list() == []
    # Other stores never take a notebook path for text.
    with pytest.raises(InvalidData, match="looks like the path of an existing file"):
        om.datasets.put(str(broken), "x")


def test_create_makes_a_notebook_from_code(om: Omega) -> None:
    meta = om.jobs.create(
        "import math\n# %%\nprint(math.pi)\n\n# %% second\nx = n", "made", parameters={"n": 3}
    )
    assert meta.details["cells"] == 4
    made = om.jobs.get("made")
    assert made.cells[0].source == "n = 3" and made.cells[0].metadata["tags"] == ["parameters"]
    assert [c.source for c in made.cells[1:]] == ["import math", "print(math.pi)", "x = n"]
    assert made.metadata["kernelspec"]["name"] == "python3"
    om.jobs.create(["a = 1", "b = 2"], "cells")
    assert [c.source for c in om.jobs.get("cells").cells] == ["a = 1", "b = 2"]
    with pytest.raises(InvalidData, match="list of texts"):
        om.jobs.create([1, 2], "bad")  # type: ignore[list-item]


def test_export_html_py_ipynb(om: Omega) -> None:
    om.jobs.create("print('exported')", "report")
    html = om.jobs.export("report")
    assert html.lstrip().lower().startswith("<!doctype html") and "exported" in html
    assert "print('exported')" in om.jobs.export("report", format="py")
    assert nbformat.reads(om.jobs.export("report", format="ipynb"), 4).cells[0].source == (
        "print('exported')"
    )
    with pytest.raises(InvalidData, match="not one of html, ipynb, py"):
        om.jobs.export("report", format="pdf")  # type: ignore[arg-type]
    om.jobs.put({"a": 1}, "json-thing")
    with pytest.raises(InvalidData, match="only notebooks export"):
        om.jobs.export("json-thing")
    with pytest.raises(NotFound):
        om.jobs.export("missing")
