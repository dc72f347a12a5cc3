"""A sweep never deletes what a live writer holds, however young it lets files be.

Seen: a writer racing ``om sweep --older-than 0`` died with
``FileNotFoundError`` on its temporary file: age was the sweep's only guard.
Now a writer locks its temporary file (``flock``) until it is renamed into
place, and a put its blobs until its catalog commit; the sweep skips what is
locked. Here a writer process puts without pause while ``om sweep
--older-than 0`` runs at least 100 times: the writer never fails and everything it
committed reads back. The sweeps run in two sweeper processes (``Omega.sweep``
in a loop, what the CLI calls) so that they follow each other as fast as a sweep
can go, hundreds of them; a few real ``om sweep`` processes race the writer too.
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

SWEEPS = 100  # at least, in all
AT_ONCE = 2  # sweeper processes running together (two cores)
CLI_SWEEPS = 4  # of them, run as `om sweep --older-than 0` processes
RACE_SECONDS = 8.0  # how long the sweepers race the writer

SWEEPER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import omops

    home, stop = sys.argv[1], Path(sys.argv[2])
    removed = {"temporaries": 0, "orphans": 0, "held": 0, "sweeps": 0}
    om = omops.Omega(home=home)
    while not stop.exists():  # one sweep after the other, as fast as they go
        done = om.sweep(older_than=0)
        for key in ("temporaries", "orphans", "held"):
            removed[key] += done[key]
        removed["sweeps"] += 1
    om.close()
    print(json.dumps(removed))
    """
)

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
    removed = {"temporaries": 0, "orphans": 0, "held": 0, "sweeps": 0}
    started = time.perf_counter()
    sweeper = tmp_path / "sweeper.py"
    sweeper.write_text(SWEEPER)
    try:
        sweepers = [
            subprocess.Popen(
                [sys.executable, str(sweeper), str(home), str(stop)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(AT_ONCE)
        ]
        for _ in range(CLI_SWEEPS):  # meanwhile, the command line's sweeps
            done = subprocess.run(
                [str(OM), "sweep", "--older-than", "0", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            for key in ("temporaries", "orphans", "held"):
                removed[key] += json.loads(done.stdout)[key]
            removed["sweeps"] += 1
        time.sleep(max(0.0, started + RACE_SECONDS - time.perf_counter()))
        assert writer.poll() is None, writer.communicate()[1]  # still writing
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=300)
    for process in sweepers:
        swept, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
        for key, value in json.loads(swept).items():
            removed[key] += value
    assert writer.returncode == 0, err
    written = json.loads(out)
    print(
        f"{removed['sweeps']} sweeps in {time.perf_counter() - started:.0f} s against "
        f"{written['puts']} rounds of puts ({written['rows']} rows): {removed}"
    )
    assert removed["sweeps"] >= SWEEPS
    assert written["puts"] > 10  # the writer really raced them
    # and the sweeps really met its files while it held them: these are what an
    # age-only sweep (older_than=0) would have deleted under the writer
    assert removed["held"] > 0
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
            "held": 0,
            "dry_run": False,
        }  # the racing sweeps left nothing behind either
    finally:
        om.close()
