"""``om.sweep()`` / ``om sweep``: leftovers of killed writers go, nothing else does."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import omops
from omops.cli.app import app
from omops.errors import InvalidData, StorageError
from omops.omega import Omega

DAY = 24 * 3600


def age(path: str, seconds: float) -> None:
    """Make a local file look untouched for ``seconds``."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def leftover_tmp(om: Omega, name: str, size: int = 10) -> str:
    folder = f"{om.blobs.root}/tmp"
    om.blobs.fs.makedirs(folder, exist_ok=True)
    path = f"{folder}/{name}"
    with om.blobs.fs.open(path, "wb") as out:
        out.write(b"x" * size)
    return path


def test_old_temporary_files_go_new_ones_stay(om: Omega) -> None:
    old, new = leftover_tmp(om, "old", 100), leftover_tmp(om, "new", 7)
    age(old, 2 * DAY)

    assert om.sweep(dry_run=True) == {
        "temporaries": 1,
        "orphans": 0,
        "bytes": 100,
        "held": 0,
        "dry_run": True,
    }
    assert os.path.exists(old)
    assert om.sweep()["temporaries"] == 1
    assert not os.path.exists(old) and os.path.exists(new)
    assert om.sweep(older_than=0)["temporaries"] == 1
    assert not os.path.exists(new)


def test_unused_blobs_go_blobs_in_use_stay(om: Omega) -> None:
    frame = pd.DataFrame({"x": [1, 2, 3]})
    om.datasets.put(frame, "kept")
    om["other"].datasets.put(pd.DataFrame({"y": [4.0]}), "kept-in-another-bucket")
    orphan = om.blobs.put_bytes(b"written, never committed")
    for key, _ in om.blobs.stored(0):
        age(om.blobs.path(key), 2 * DAY)

    assert om.sweep(dry_run=True)["orphans"] == 1
    assert om.blobs.exists(orphan)
    done = om.sweep()
    assert done["orphans"] == 1 and done["bytes"] == len(b"written, never committed")
    assert not om.blobs.exists(orphan)
    pd.testing.assert_frame_equal(om.datasets.get("kept"), frame)
    assert om["other"].datasets.get("kept-in-another-bucket")["y"].tolist() == [4.0]
    assert om.sweep() == {
        "temporaries": 0,
        "orphans": 0,
        "bytes": 0,
        "held": 0,
        "dry_run": False,
    }


def test_recent_unused_blobs_stay(om: Omega) -> None:
    """A put between writing its blob and committing looks just like this."""
    orphan = om.blobs.put_bytes(b"a put in progress")
    assert om.sweep()["orphans"] == 0
    assert om.blobs.exists(orphan)


def sweep_before_the_first_commit(om: Omega, monkeypatch) -> list[dict]:
    """Make the next put's commit run a sweep (older_than=0) just before it commits."""
    commit = om.catalog.commit
    swept: list[dict] = []

    def sweep_then_commit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not swept:
            swept.append(om.sweep(older_than=0))
        return commit(*args, **kwargs)

    monkeypatch.setattr(om.catalog, "commit", sweep_then_commit)
    return swept


def test_a_sweep_leaves_the_blobs_of_a_put_in_progress_alone(om: Omega, monkeypatch) -> None:
    """A put holds its blob (a lock on the local file) from writing it to its commit."""
    frame = pd.DataFrame({"x": [1.5, 2.5]})
    swept = sweep_before_the_first_commit(om, monkeypatch)
    om.datasets.put(frame, "raced")
    assert swept[0]["orphans"] == 0  # not yet referenced, but held
    pd.testing.assert_frame_equal(om.datasets.get("raced"), frame)


def test_a_blob_swept_before_its_commit_is_written_again(tmp_path: Path, monkeypatch) -> None:
    """Without locks (a remote store) the sweep deletes under the catalog's blob lock, and
    the put notices and writes the blob again."""
    om = Omega(catalog=f"sqlite:///{tmp_path}/catalog.sqlite", blobs="memory://sweep-race")
    try:
        frame = pd.DataFrame({"x": [1.5, 2.5]})
        swept = sweep_before_the_first_commit(om, monkeypatch)
        om.datasets.put(frame, "raced")
        assert swept[0]["orphans"] >= 1  # the put's blob, not yet referenced, was deleted
        pd.testing.assert_frame_equal(om.datasets.get("raced"), frame)
    finally:
        om.blobs.fs.rm("/sweep-race", recursive=True)
        om.catalog.close()


def test_a_negative_age_is_refused(om: Omega) -> None:
    with pytest.raises(InvalidData, match="older_than"):
        om.sweep(older_than=-1)


def test_only_temporary_files_can_be_removed(om: Omega) -> None:
    with pytest.raises(StorageError, match="not a temporary file"):
        om.blobs.remove(f"{om.blobs.root}/objects/ab/cd")


def test_a_remote_store_is_swept_too(tmp_path: Path) -> None:
    """fsspec's in-memory filesystem stands in for S3/GCS (no such service here)."""
    om = Omega(catalog=f"sqlite:///{tmp_path}/catalog.sqlite", blobs="memory://sweep-test")
    try:
        om.datasets.put(pd.DataFrame({"x": [1]}), "kept")
        orphan = om.blobs.put_bytes(b"orphan")
        leftover_tmp(om, "crashed")
        assert om.sweep()["temporaries"] == 0  # both are new
        done = om.sweep(older_than=0)
        assert (done["temporaries"], done["orphans"]) == (1, 1)
        assert not om.blobs.exists(orphan)
        assert om.datasets.get("kept")["x"].tolist() == [1]
    finally:
        om.blobs.fs.rm("/sweep-test", recursive=True)
        om.catalog.close()


def test_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    om = Omega(home=str(home))
    old = leftover_tmp(om, "old", 2048)
    age(old, 2 * 3600)
    om.catalog.close()
    omops.reset()
    env = {"OMOPS_HOME": str(home)}
    try:
        dry = CliRunner().invoke(app, ["sweep", "--dry-run", "--older-than", "1"], env=env)
        assert dry.exit_code == 0, dry.output
        assert "would remove 1 temporary file(s) and 0 unused blob(s), 2.0 KB" in dry.output
        assert os.path.exists(old)
        kept = CliRunner().invoke(app, ["sweep", "--json"], env=env)  # 24 h by default
        assert json.loads(kept.stdout)["temporaries"] == 0
        done = CliRunner().invoke(app, ["sweep", "--older-than", "1", "--json"], env=env)
        assert json.loads(done.stdout) == {
            "temporaries": 1,
            "orphans": 0,
            "bytes": 2048,
            "held": 0,
            "dry_run": False,
        }
        assert not os.path.exists(old)
    finally:
        omops.reset()


def test_top_level_sweep_uses_the_default_instance() -> None:
    om = omops.get_omega()  # OMOPS_HOME is this test's own folder (conftest)
    old = leftover_tmp(om, "old", 64)
    age(old, 2 * DAY)
    assert omops.sweep(dry_run=True) == {
        "temporaries": 1,
        "orphans": 0,
        "bytes": 64,
        "held": 0,
        "dry_run": True,
    }
    assert omops.sweep()["temporaries"] == 1
    assert not os.path.exists(old)
    assert omops.sweep.__doc__ == Omega.sweep.__doc__


def test_a_live_writers_temporary_file_is_never_swept(om: Omega) -> None:
    """Age alone is not enough: the writer's lock on its file keeps it, however old."""
    with om.blobs.writer() as out:
        out.write(b"half")
        (path,) = [p for p, _ in om.blobs.temporaries(0)]
        age(path, 2 * DAY)
        assert om.sweep(dry_run=True)["temporaries"] == 0
        assert om.sweep(older_than=0)["temporaries"] == 0
        assert os.path.exists(path)
        out.write(b" and the rest")
    assert om.blobs.read(out.hexdigest()) == b"half and the rest"
    assert om.blobs.temporaries(0) == []


def test_a_file_swept_before_its_writer_locked_it_is_replaced(om: Omega, monkeypatch) -> None:
    """The writer creates its file, then locks it: a sweep in between takes the file, and
    the writer, finding it unlinked once locked, starts over under a new name."""
    import omops.blobs as blobs_module

    real_flock = blobs_module.fcntl.flock
    swept: list[bool] = []

    def flock_after_a_sweep(fd: int, operation: int) -> None:
        if not swept and operation == blobs_module.fcntl.LOCK_EX:
            swept.append(True)
            assert om.sweep(older_than=0)["temporaries"] == 1  # the new, unlocked file
        real_flock(fd, operation)

    monkeypatch.setattr(blobs_module.fcntl, "flock", flock_after_a_sweep)
    key = om.blobs.put_bytes(b"written anyway")
    assert swept and om.blobs.read(key) == b"written anyway"
