"""``om.scripts.put``: folders, setup.py paths, sdists and wheels become stored wheels."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from omops.errors import InvalidData
from omops.omega import Omega
from omops.plugins.package import Wheel

from .support import ECHO, make_package


def wheel_names(wheel: Wheel) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(wheel.data)).namelist()


def test_a_folder_with_pyproject_is_built_into_a_wheel(om: Omega, tmp_path: Path):
    folder = make_package(tmp_path, "my-script", ECHO, version="1.2")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    meta = om.scripts.put(folder, "myscript")

    assert meta.kind == "python.package"
    details = meta.to_dict()
    assert details["package"] == "my-script" and details["version"] == "1.2"
    assert details["wheel"] == "my_script-1.2-py3-none-any.whl"
    assert details["entry"] == "my_script:run" and details["built_from"] == "folder"
    wheel = om.scripts.get("myscript")
    assert isinstance(wheel, Wheel) and wheel.filename == details["wheel"]
    assert details["sha256"] == wheel.sha256 and len(details["sha256"]) == 64
    assert "my_script/__init__.py" in wheel_names(wheel)
    # built in a copy: no build/ or *.egg-info left in the user's folder
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_the_seeds_setup_py_path_works(om: Omega, tmp_path: Path):
    folder = make_package(tmp_path, "seedscript", ECHO, layout="setup.py")

    meta = om.scripts.put(str(folder / "setup.py"), "myscript")  # the seed's form

    assert meta.details["package"] == "seedscript" and meta.details["entry"] == "seedscript:run"


def test_an_sdist_and_a_wheel_file_are_taken(om: Omega, tmp_path: Path):
    folder = make_package(tmp_path, "packed", ECHO, version="2.0")
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(folder),
        ],
        check=True,
        capture_output=True,
    )
    sdist = next(dist.glob("*.tar.gz"))

    from_sdist = om.scripts.put(sdist, "from-sdist")
    wheel_file = om.scripts.get("from-sdist").save(tmp_path)
    from_wheel = om.scripts.put(str(wheel_file), "from-wheel")

    assert from_sdist.details["built_from"] == "sdist" and from_sdist.details["version"] == "2.0"
    assert from_wheel.details["built_from"] == "wheel"
    # a stored wheel is the file's bytes, unchanged
    assert om.scripts.get("from-wheel").data == wheel_file.read_bytes()
    assert from_wheel.details["sha256"] == from_sdist.details["sha256"]


def test_what_get_returns_can_be_put_again(om: Omega, wheels):
    om.scripts.put(wheels["echo"], "a")
    copy = om.scripts.put(om.scripts.get("a"), "b")
    assert copy.details["sha256"] == wheels["echo"].sha256
    assert om.scripts.get("b") == wheels["echo"]


def test_a_new_put_is_a_new_revision(om: Omega, tmp_path: Path):
    first = om.scripts.put(make_package(tmp_path / "1", "s", ECHO, version="1.0"), "s")
    second = om.scripts.put(make_package(tmp_path / "2", "s", ECHO, version="2.0"), "s")
    assert first.revision != second.revision
    assert om.scripts.metadata(f"s@{first.revision[:8]}").details["version"] == "1.0"
    assert om.scripts.metadata("s").details["version"] == "2.0"


def test_an_entry_point_names_the_function(om: Omega, tmp_path: Path):
    code = "def main(om, **kw):\n    return kw\n"
    folder = make_package(tmp_path, "tool", code, module="tool", entry="tool:main")
    assert om.scripts.put(folder, "tool").details["entry"] == "tool:main"


def test_several_modules_without_an_entry_point_are_refused(om: Omega, tmp_path: Path):
    folder = make_package(tmp_path, "twomods", ECHO, module="alpha", extra_modules=("beta",))
    with pytest.raises(InvalidData, match=r"alpha, beta.*omops\.scripts"):
        om.scripts.put(folder, "two")
    assert om.scripts.list() == []


def test_a_failing_build_says_what_the_build_said(om: Omega, tmp_path: Path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "setup.py").write_text("raise RuntimeError('setup.py is broken on purpose 4711')\n")

    with pytest.raises(InvalidData) as caught:
        om.scripts.put(folder, "broken")

    message = str(caught.value)
    assert "building" in message and "failed" in message and "fix the package" in message
    assert "setup.py is broken on purpose 4711" in message  # the build's own output
    assert om.scripts.list() == []


def test_invalid_pyproject_is_a_clear_error(om: Omega, tmp_path: Path):
    folder = tmp_path / "badtoml"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[build-system\nrequires = \n")
    with pytest.raises(InvalidData, match="not valid TOML"):
        om.scripts.put(folder, "bad")


def test_paths_that_are_no_package_are_refused_clearly(om: Omega, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidData, match="neither pyproject.toml nor setup.py"):
        om.scripts.put(empty, "x")
    with pytest.raises(InvalidData, match="is not a Python package"):
        om.scripts.put(str(tmp_path / "notes.txt"), "x")
    with pytest.raises(InvalidData, match="not a wheel"):
        (tmp_path / "fake-1.0-py3-none-any.whl").write_bytes(b"not a zip")
        om.scripts.put(tmp_path / "fake-1.0-py3-none-any.whl", "x")
    archive = tmp_path / "nothing.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    with pytest.raises(InvalidData, match="not an sdist"):
        om.scripts.put(archive, "x")
    assert om.scripts.list() == []


def test_a_path_that_is_no_package_is_never_stored_as_text(
    om: Omega, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "pkg").mkdir()
    monkeypatch.chdir(tmp_path)
    for text in (str(tmp_path / "data.csv"), "data.csv", "./pkg", str(tmp_path)):
        with pytest.raises(InvalidData, match="kind='python.json'") as caught:
            om.scripts.put(text, "path")
        assert repr(text) in str(caught.value)
    assert om.scripts.list() == []
    assert om.scripts.put(str(tmp_path), "text", kind="python.json").kind == "python.json"


def test_other_stores_still_refuse_paths(om: Omega, tmp_path: Path):
    folder = make_package(tmp_path, "pkg", ECHO)
    with pytest.raises(InvalidData, match="existing folder"):
        om.datasets.put(str(folder), "x")
    # text that names no path is still JSON in scripts
    assert om.scripts.put("just some text", "note").kind == "python.json"
