"""The omops quickstart: store data, store a model, read both back, predict.

Runs on the embedded default (SQLite catalog + local blob folder under
OMOPS_HOME, local executor); nothing to install or start first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import omops as om


def main() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "y": rng.normal(size=200)})
    df["sales"] = (df["x"] + df["y"] > 0).astype(int) * 150 + rng.integers(0, 100, 200)

    om.datasets.put(df, "stats", append=False)
    print("stored dataset 'stats':", om.datasets.metadata("stats").rows, "rows")
    high = om.datasets.get("stats", sales__gte=100)
    print("rows with sales >= 100:", len(high))

    df["high"] = (df["sales"] >= 100).astype(int)
    om.datasets.put(df, "stats", append=False)
    om.models.put(LogisticRegression(), "forecast")
    fitted = om.runtime.model("forecast").fit("stats[x,y]", "stats[high]").get()
    print(f"fitted 'forecast' through om.runtime: revision {fitted['revision'][:8]}")

    predictions = om.runtime.model("forecast").predict("stats[x,y]").get()
    print("predictions for the first 5 rows:", predictions[:5])
    print("revisions:", [(rev[:8], tags) for rev, tags in om.models.revisions("forecast")])


if __name__ == "__main__":
    main()
