import pandas as pd


def test_put_get_roundtrip(om):
    df = pd.DataFrame({"sales": [10, 200, 300], "x": [1.0, 2.0, 3.0]})
    om.datasets.put(df, "stats")
    pd.testing.assert_frame_equal(om.datasets.get("stats"), df)
    assert om.datasets.get("stats", sales__gte=100)["sales"].tolist() == [200, 300]


def test_importing_omops_loads_no_data_library():
    """`import omops` (every `om` command starts with it) stays quick: pandas, pyarrow,
    NumPy and DuckDB load when data is first touched, not at import."""
    import subprocess
    import sys

    code = (
        "import sys, omops, omops.omega, omops.repository; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'duckdb') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
