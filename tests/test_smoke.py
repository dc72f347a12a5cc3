import pandas as pd


def test_put_get_roundtrip(om):
    df = pd.DataFrame({"sales": [10, 200, 300], "x": [1.0, 2.0, 3.0]})
    om.datasets.put(df, "stats")
    pd.testing.assert_frame_equal(om.datasets.get("stats"), df)
    assert om.datasets.get("stats", sales__gte=100)["sales"].tolist() == [200, 300]
