"""No data lost: crashes and concurrent writers, on SQLite and PostgreSQL.

1. A put killed with SIGKILL (at a fixed point, or at random moments of a loop
   of large puts) leaves the previous revision whole and the store writable.
2. Concurrent appenders lose no row; readers meanwhile see whole puts only.
3. Concurrent first puts create a brand-new catalog, blob folder and object.
4. Concurrent put, tag and drop of one name: no deadlock, no empty read, no
   committed revision whose blob a drop deleted.

Every writer here is a real OS process running ``_WORKER`` (written to
``tmp_path`` and run with this interpreter), so SQLite file locks, PostgreSQL
connections and the blob folder are exercised exactly as in production. The
only fault injection is in those children: ``os.kill(os.getpid(), SIGKILL)``
at a chosen point of a put, or a SIGKILL sent by this process at a random
moment.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from subprocess import Popen

import numpy as np
import pandas as pd
import pytest

from omops.omega import Omega

_WORKER = r'''
"""Child process for tests/test_durability.py: python worker.py MODE CATALOG BLOBS ..."""
import os
import signal
import sys
import time

import numpy as np
import pandas as pd

from omops.omega import Omega


def sales(revision):
    """Revision ``revision`` of the dataset of the single-kill tests."""
    n = 1000 * revision
    return pd.DataFrame({
        "revision": np.full(n, revision, dtype="int64"),
        "i": np.arange(n, dtype="int64"),
        "x": np.arange(n, dtype="float64") / (revision + 1),
        "label": [f"r{revision}-{i}" for i in range(n)],
        "when": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
    })


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def killed_put(om, kill_in):
    """Store revision 1, then die during the put of revision 2 at ``kill_in``."""
    om.datasets.put(sales(1), "sales")
    # omops.catalog and omops.blobs name the default instance's catalog and
    # blobs on the package, so patch the classes through from-imports.
    if kill_in == "commit":
        # The blob of revision 2 is written; the catalog commit never starts.
        from omops.catalog.store import Catalog

        Catalog.commit = die
    elif kill_in == "transaction":
        # Inside the commit's transaction: revision and parts rows are
        # inserted, tags not yet moved, nothing committed.
        from omops.catalog.store import Catalog

        Catalog._set_tags = die
    elif kill_in == "blob":
        # Halfway through writing the Parquet blob of revision 2.
        from omops.blobs import HashingWriter

        write = HashingWriter.write

        def write_then_die(self, data):
            written = write(self, data)
            if self.size > 10_000:
                self.flush()
                die()
            return written

        HashingWriter.write = write_then_die
    else:
        raise SystemExit(f"unknown kill point {kill_in!r}")
    om.datasets.put(sales(2), "sales", append=False)
    raise SystemExit("the put of revision 2 returned although the process was to be killed")


def chunk(run, k, rows):
    return pd.DataFrame({
        "run": np.full(rows, run, dtype="int32"),
        "k": np.full(rows, k, dtype="int32"),
        "i": np.arange(rows, dtype="int64"),
    })


def put_loop(om, run, rows):
    """Replace the dataset with chunk 0 of this run, then append chunks 1, 2, ...

    Prints ``done K`` after chunk K's put returned; runs until killed.
    """
    first = chunk(run, 0, rows)
    print("ready", flush=True)
    k = 0
    while True:
        om.datasets.put(first if k == 0 else chunk(run, k, rows), "big", append=k > 0)
        print(f"done {k}", flush=True)
        k += 1


def wait_for_go():
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def appender(om, worker, puts, rows):
    """After the go, append ``puts`` frames of ``rows`` rows tagged (worker, seq)."""
    frames = [
        pd.DataFrame({
            "worker": np.full(rows, worker, dtype="int64"),
            "seq": np.full(rows, seq, dtype="int64"),
            "j": np.arange(rows, dtype="int64"),
            "value": np.arange(rows, dtype="float64") + 1000.0 * worker + seq,
        })
        for seq in range(puts)
    ]
    # Import what the first put imports lazily, so the go is a tight start.
    import alembic.command  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    wait_for_go()
    for frame in frames:
        om.datasets.put(frame, "shared")
    om.catalog.close()
    print("done", flush=True)


def churn(om, role, worker, seconds):
    """After the go, for ``seconds``: put (with a tag), move a tag, or drop one name.

    Errors are allowed only for a tag or read of what a concurrent drop
    removed; a put never fails, and its revision reads back whole while it exists.
    """
    from omops.errors import NotFound

    import alembic.command  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    wait_for_go()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        if role == "put":
            # Two puts in three store the same bytes as the other putter's,
            # so a drop may find their blob unused while a put is about to use it.
            tag = (worker, i) if i % 3 == 0 else (-1, -1)
            frame = pd.DataFrame({"worker": [tag[0]] * 5, "i": [tag[1]] * 5, "j": range(5)})
            ref = f"churn@{om.datasets.put(frame, 'churn', append=False, tag='put').revision}"
            try:
                back = om.datasets.get(ref)
            except (NotFound, OSError):  # OSError: blobs deleted by the drop as we read
                if om.datasets.exists(ref):
                    raise
            else:
                pd.testing.assert_frame_equal(back, frame)
        elif role == "tag":
            try:
                om.datasets.tag("churn", "latest", "moved")
            except NotFound:
                pass
        elif role == "drop":
            om.datasets.drop("churn", force=True)
            time.sleep(0.005)
    om.catalog.close()
    print("done", flush=True)


def main():
    mode, catalog, blobs, *args = sys.argv[1:]
    om = Omega(catalog=catalog, blobs=blobs)
    if mode == "kill":
        killed_put(om, args[0])
    elif mode == "loop":
        put_loop(om, int(args[0]), int(args[1]))
    elif mode == "append":
        appender(om, int(args[0]), int(args[1]), int(args[2]))
    elif mode == "churn":
        churn(om, args[0], int(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
'''


def _worker(tmp_path: Path) -> Path:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(_WORKER)
    return script


@contextmanager
def _spawn(tmp_path: Path, name: str, *args: object, stdin: bool = False) -> Iterator[Popen]:
    """Run the worker script; its stderr goes to ``tmp_path/<name>.err``.

    On leaving the block a child still running is killed, and its pipes are closed.
    """
    with (tmp_path / f"{name}.err").open("w") as err:
        child = Popen(
            [sys.executable, "-W", "error", str(_worker(tmp_path)), *map(str, args)],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    with child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def _stderr(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.err").read_text()


def _load_worker_module(tmp_path: Path) -> dict:
    """The worker's helpers (``sales``, ``chunk``), without running its main()."""
    script = _worker(tmp_path)
    namespace: dict = {"__name__": "durability_worker"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    return namespace


def _check_blobs(blobs: Path) -> list[str]:
    """Every file under ``objects/`` is complete: its SHA-256 is its key. Returns the keys."""
    keys = []
    objects = blobs / "objects"
    for path in sorted(objects.rglob("*")) if objects.exists() else []:
        if path.is_dir():
            continue
        key = path.parent.name + path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == key, f"blob {path} is corrupt or partially written"
        keys.append(key)
    return keys


def _tmp_garbage(blobs: Path) -> list[Path]:
    tmp = blobs / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


# -- 1a. SIGKILL at a fixed point of a put ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kill_in", ["commit", "transaction", "blob"])
def test_put_killed_midway_keeps_previous_revision(catalog_url, tmp_path, kill_in):
    blobs = tmp_path / "blobs"
    with _spawn(tmp_path, "kill", "kill", catalog_url, blobs, kill_in) as child:
        out, _ = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, (
        f"child ended with {child.returncode}, not SIGKILL:\n{out}\n{_stderr(tmp_path, 'kill')}"
    )
    assert _stderr(tmp_path, "kill") == ""

    sales = _load_worker_module(tmp_path)["sales"]
    om = Omega(catalog=catalog_url, blobs=str(blobs))
    try:
        pd.testing.assert_frame_equal(om.datasets.get("sales"), sales(1))
        history = om.datasets.revisions("sales")
        assert len(history) == 1 and history[0][1] == ["latest"]
        assert om.datasets.metadata("sales").rows == 1000
        keys = _check_blobs(blobs)
        if kill_in == "blob":
            # Only revision 1's blob is in place; the torn write is garbage under tmp/.
            assert len(keys) == 1
            assert [p.stat().st_size > 0 for p in _tmp_garbage(blobs)] == [True]
        else:
            # Revision 2's blob was complete when the process died: an orphan, not damage.
            assert len(keys) == 2

        # Nothing is left locked: the store takes the next put and reads it back.
        om.datasets.put(sales(2), "sales", append=False)
        pd.testing.assert_frame_equal(om.datasets.get("sales"), sales(2))
        pd.testing.assert_frame_equal(om.datasets.get("sales", revision=history[0][0]), sales(1))
        assert len(om.datasets.revisions("sales")) == 2
    finally:
        om.catalog.close()


# -- 1b. SIGKILL at random moments of a loop of large puts ------------------

_CHUNK = 2_000_000
_WAIT_PUTS = (1, 0, 2, 0, 3)  # one SIGKILL per entry; the first run must commit something


def _check_chunks(frame: pd.DataFrame) -> tuple[int, int]:
    """``frame`` is chunks 0..m-1 of one run, each complete; return ``(run, m)``."""
    assert len(frame) % _CHUNK == 0 and len(frame) > 0, f"{len(frame)} rows is no whole chunk"
    m = len(frame) // _CHUNK
    run = frame["run"].to_numpy()
    assert (run == run[0]).all(), "chunks of different runs mixed"
    k, i = frame["k"].to_numpy(), frame["i"].to_numpy()
    np.testing.assert_array_equal(k, np.repeat(np.arange(m, dtype="int32"), _CHUNK))
    np.testing.assert_array_equal(i, np.tile(np.arange(_CHUNK, dtype="int64"), m))
    return int(run[0]), m


@pytest.mark.slow
def test_large_puts_killed_at_random_moments(catalog_url, tmp_path):
    blobs = tmp_path / "blobs"
    rng = random.Random(20261126)
    om = Omega(catalog=catalog_url, blobs=str(blobs))
    state: tuple[int, int] | None = None  # (run, chunks) of the last complete version seen
    committed = 0  # puts that committed, over all runs
    put_seconds = 0.0  # how long the child's last put took
    try:
        for run in range(1, len(_WAIT_PUTS) + 1):
            # Let the child finish ``wait_puts`` puts, then kill it a random
            # fraction of a put later: in a blob write, a commit or between
            # puts. Paced by the child's progress, so a slow machine shifts
            # nothing. With 0 the run's first put (the replace) is the one hit.
            wait_puts = _WAIT_PUTS[run - 1]
            with _spawn(tmp_path, f"loop{run}", "loop", catalog_url, blobs, run, _CHUNK) as child:
                assert child.stdout.readline() == "ready\n", _stderr(tmp_path, f"loop{run}")
                started = time.monotonic()
                for _ in range(wait_puts):
                    assert child.stdout.readline().startswith("done"), _stderr(
                        tmp_path, f"loop{run}"
                    )
                    put_seconds = time.monotonic() - started
                    started = time.monotonic()
                time.sleep(rng.uniform(0.0, 1.2 * put_seconds))
                child.send_signal(signal.SIGKILL)
                out, _ = child.communicate(timeout=60)
            assert child.returncode == -signal.SIGKILL, _stderr(tmp_path, f"loop{run}")
            assert _stderr(tmp_path, f"loop{run}") == ""
            printed = wait_puts + out.split().count("done")  # puts that returned before the kill

            if not om.datasets.exists("big"):
                assert state is None and printed == 0
                continue
            found_run, m = _check_chunks(om.datasets.get("big"))
            if found_run == run:
                # This run's puts committed; the one killed may have committed unreported.
                assert printed <= m <= printed + 1, (printed, m)
                committed += m
            else:
                # Killed before its first put committed: the previous version stands.
                assert (found_run, m) == state and printed == 0
            state = (found_run, m)
            assert len(om.datasets.revisions("big")) == committed
            assert om.datasets.metadata("big").rows == m * _CHUNK
            _check_blobs(blobs)

        # The store is still writable after all the kills.
        assert state is not None, "no put committed in any run; give the children more time"
        extra = _load_worker_module(tmp_path)["chunk"](state[0], state[1], _CHUNK)
        om.datasets.put(extra, "big")
        assert _check_chunks(om.datasets.get("big")) == (state[0], state[1] + 1)
        assert len(om.datasets.revisions("big")) == committed + 1
    finally:
        om.catalog.close()


# -- 2 and 3. Concurrent writers ------------------------------------------------


def _run_appenders(
    tmp_path: Path,
    catalog_url: str,
    workers: int,
    puts: int,
    rows: int,
    while_running: Callable[[], None] | None = None,
) -> None:
    """Start ``workers`` appenders, release them at once, wait until all are done.

    ``while_running`` is called over and over until the last one has finished.
    """
    _run_together(
        tmp_path, catalog_url, [("append", w, puts, rows) for w in range(workers)], while_running
    )


def _run_together(
    tmp_path: Path,
    catalog_url: str,
    commands: list[tuple[object, ...]],
    while_running: Callable[[], None] | None = None,
) -> None:
    """Start one worker per ``(mode, *args)``, release them at once, wait until all are done."""
    blobs = tmp_path / "blobs"
    with ExitStack() as stack:
        children = [
            stack.enter_context(
                _spawn(tmp_path, f"append{w}", mode, catalog_url, blobs, *args, stdin=True)
            )
            for w, (mode, *args) in enumerate(commands)
        ]
        for w, child in enumerate(children):
            assert child.stdout.readline() == "ready\n", _stderr(tmp_path, f"append{w}")
        for child in children:  # the barrier: every worker is waiting for this line
            child.stdin.write("go\n")
            child.stdin.flush()
        deadline = time.monotonic() + 120
        while while_running is not None and any(c.poll() is None for c in children):
            assert time.monotonic() < deadline, "appenders did not finish in 120 s"
            while_running()
        for w, child in enumerate(children):
            out, _ = child.communicate(timeout=120)
            assert child.returncode == 0 and out == "done\n", (
                f"{commands[w]} ended with {child.returncode}:\n{_stderr(tmp_path, f'append{w}')}"
            )
            assert _stderr(tmp_path, f"append{w}") == ""


def _check_whole_puts(frame: pd.DataFrame, rows: int) -> None:
    """A reader's view: only whole puts, and of each worker its first n puts in order."""
    counts = frame.groupby(["worker", "seq"]).size()
    assert (counts == rows).all(), "a reader saw part of a put"
    for worker, of_worker in frame.groupby("worker"):
        seqs = of_worker["seq"].to_numpy()[::rows]
        np.testing.assert_array_equal(
            seqs, np.arange(len(seqs)), f"worker {worker}: gap or reorder"
        )


def _check_appended(om: Omega, workers: int, puts: int, rows: int) -> pd.DataFrame:
    frame = om.datasets.get("shared")
    assert len(frame) == workers * puts * rows
    assert om.datasets.metadata("shared").rows == workers * puts * rows
    counts = frame.groupby(["worker", "seq"]).size()
    expected = pd.MultiIndex.from_product([range(workers), range(puts)], names=["worker", "seq"])
    assert counts.index.equals(expected), "some (worker, seq) pairs are missing or unexpected"
    _check_whole_puts(frame, rows)
    worker, seq, j = (frame[c].to_numpy() for c in ("worker", "seq", "j"))
    np.testing.assert_array_equal(frame["value"].to_numpy(), j + 1000.0 * worker + seq)
    assert len(om.datasets.revisions("shared")) == workers * puts
    _check_blobs(Path(om.blobs.root))
    return frame


@pytest.mark.slow
def test_concurrent_appends_lose_no_row(catalog_url, tmp_path):
    workers, puts, rows = 4, 50, 10
    om = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"))
    seen: list[int] = []

    def read_while_appending() -> None:
        # Readers never block writers and see a whole revision, never half.
        if om.datasets.exists("shared"):
            frame = om.datasets.get("shared")
            _check_whole_puts(frame, rows)
            assert not seen or len(frame) >= seen[-1], "a reader saw rows disappear"
            seen.append(len(frame))
        time.sleep(0.05)

    try:
        om.catalog.engine()  # the schema exists; this test is about the appends
        _run_appenders(tmp_path, catalog_url, workers, puts, rows, read_while_appending)
        frame = _check_appended(om, workers, puts, rows)
        # The workers really ran at the same time: their puts interleave.
        per_put = frame["worker"].to_numpy()[::rows]
        assert np.count_nonzero(per_put[1:] != per_put[:-1]) > workers - 1, (
            "puts did not interleave"
        )
        assert seen, "the reader never ran while the workers appended"
    finally:
        om.catalog.close()


@pytest.mark.slow
def test_concurrent_first_put_on_new_catalog(catalog_url, tmp_path):
    # Nothing exists yet: no catalog schema (no SQLite file at all), no blob
    # folder, no object. Four processes create all of it at the same moment.
    assert not (tmp_path / "catalog.sqlite").exists() and not (tmp_path / "blobs").exists()
    workers, puts, rows = 4, 1, 100
    _run_appenders(tmp_path, catalog_url, workers, puts, rows)
    om = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"))
    try:
        _check_appended(om, workers, puts, rows)
    finally:
        om.catalog.close()


@pytest.mark.slow
def test_concurrent_put_tag_drop_of_one_name(catalog_url, tmp_path):
    # Writers of one object's revisions and tags queue on the object instead
    # of deadlocking (PostgreSQL) or tripping over a concurrent drop; a read
    # racing a drop fails with NotFound instead of returning an empty frame;
    # and a drop never deletes a blob that a concurrent put of the same
    # content is committing.
    seconds = 3
    _run_together(
        tmp_path,
        catalog_url,
        [
            ("churn", "put", 0, seconds),
            ("churn", "put", 1, seconds),
            ("churn", "tag", 2, seconds),
            ("churn", "drop", 3, seconds),
        ],
    )
    om = Omega(catalog=catalog_url, blobs=str(tmp_path / "blobs"))
    try:
        if not om.datasets.exists("churn"):
            om.datasets.put(pd.DataFrame({"worker": [9], "i": [0], "j": [0]}), "churn")
        for revision, _ in om.datasets.revisions("churn"):
            om.datasets.get(f"churn@{revision}")
        om.datasets.tag("churn", "latest", "moved")
        om.datasets.drop("churn")
        assert not om.datasets.exists("churn")
        _check_blobs(tmp_path / "blobs")
    finally:
        om.catalog.close()


def test_a_read_racing_a_drop_is_not_found_even_when_a_put_brings_the_bytes_back(tmp_path):
    # The race the churn test above can hit: a get has found the revision and its
    # parts, a drop removes both and deletes the blob, a put of the same frame under
    # another name writes the same blob again, and only then does the get open it.
    from omops.errors import NotFound

    om = Omega(home=str(tmp_path))
    frame = pd.DataFrame({"a": [1, 2, 3]})
    om.datasets.put(frame, "x")
    rev = om.catalog.lookup(om.bucket, "datasets", "x", None)
    parts = om.catalog.parts(rev)
    om.datasets.drop("x")
    om.datasets.put(frame, "y")
    assert om.blobs.exists(parts[0].blob)  # the bytes are back, intact
    with pytest.raises(NotFound, match="dropped meanwhile"):
        with om.datasets._reading("x", rev, parts):
            raise FileNotFoundError(parts[0].blob)  # what the get saw in between
    om.close()
