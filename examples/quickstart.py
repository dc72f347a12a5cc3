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

    X, y = om.datasets.get("stats[^sales]"), om.datasets.get("stats[sales]")["sales"] >= 100
    clf = LogisticRegression().fit(X, y)
    meta = om.models.put(clf, "forecast")
    print(f"stored model 'forecast' revision {meta.revision[:8]} ({meta.kind})")

    model = om.models.get("forecast")
    print("predictions for the first 5 rows:", model.predict(X.head()).tolist())
    print("revisions:", [(rev[:8], tags) for rev, tags in om.models.revisions("forecast")])


if __name__ == "__main__":
    main()
