"""A sweep never deletes what a live writer holds, however young it lets files be.

Seen: a writer racing ``om sweep --older-than 0`` died with
``FileNotFoundError`` on its temporary file: age was the sweep's only guard.
Now a writer locks its temporary file (``flock``) until it is renamed into
place, and a put its blobs until its catalog commit; the sweep skips what is
locked. Here a writer process puts without pause while ``om sweep
--older-than 0`` runs 100 times: the writer never fails and everything it
committed reads back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from server.support import OM, om_env

from omops.omega import Omega

SWEEPS = 100
AT_ONCE = 2  # sweeps running together (two cores)

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    import omops

    home, stop = sys.argv[1], Path(sys.argv[2])
    om = omops.Omega(home=home)
    rng = np.random.default_rng(1)
    rows = puts = 0
    while not stop.exists():
        # Sizes from a few rows to ~2 MB: some writes take long enough to be seen.
        n = int(rng.choice([3, 1_000, 20_000, 250_000]))
        om.datasets.put(pd.DataFrame({"i": np.arange(rows, rows + n)}), "raced")
        rows += n
        om.models.put({"puts": puts}, "raced-json")
        om.datasets.put(rng.random(int(rng.integers(1, 100_000))), "raced-array", append=False)
        puts += 1
    om.close()
    print(json.dumps({"rows": rows, "puts": puts}))
    """
)


@pytest.mark.slow
def test_a_writer_racing_100_sweeps(tmp_path: Path) -> None:
    home, stop = tmp_path / "home", tmp_path / "stop"
    Omega(home=str(home)).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = om_env(home)
    writer = subprocess.Popen(
        [sys.executable, str(script), str(home), str(stop)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    removed = {"temporaries": 0, "orphans": 0}
    started = time.perf_counter()
    try:
        for _ in range(SWEEPS // AT_ONCE):
            sweeps = [
                subprocess.Popen(
                    [str(OM), "sweep", "--older-than", "0", "--json"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(AT_ONCE)
            ]
            for sweep in sweeps:
                out, err = sweep.communicate(timeout=120)
                assert sweep.returncode == 0, err
                done = json.loads(out)
                for key in removed:
                    removed[key] += done[key]
            assert writer.poll() is None, writer.communicate()[1]  # still writing
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    written = json.loads(out)
    print(
        f"{SWEEPS} sweeps in {time.perf_counter() - started:.0f} s against {written['puts']} "
        f"rounds of puts ({written['rows']} rows); the sweeps removed {removed}"
    )
    assert written["puts"] > SWEEPS // 10  # the writer really raced them
    om = Omega(home=str(home))
    try:
        frame = om.datasets.get("raced")
        assert np.array_equal(frame["i"].to_numpy(), np.arange(written["rows"]))  # nothing lost
        assert om.models.get("raced-json") == {"puts": written["puts"] - 1}
        assert isinstance(om.datasets.get("raced-array"), np.ndarray)
        revisions = [revision for revision, _ in om.datasets.revisions("raced")]
        for revision in revisions[:: max(1, len(revisions) // 20)]:  # older ones read too
            assert isinstance(om.datasets.get(f"raced@{revision}", i__lt=10), pd.DataFrame)
        assert om.sweep(older_than=0) == {
            "temporaries": 0,
            "orphans": 0,
            "bytes": 0,
            "dry_run": False,
        }  # the racing sweeps left nothing behind either
    finally:
        om.close()
