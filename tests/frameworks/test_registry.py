"""The framework kinds in the registry: covered by a contract, documented, deterministic."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

from omops.plugins import BUILTIN, SUPPORTS_ORDER

from .contract import ModelContract

README = Path(__file__).resolve().parents[2] / "README.md"
MODULES = ("keras", "lightgbm", "mlflow", "onnx", "r", "torch", "xgboost")
FRAMEWORK_KINDS = {kind for kind, spec in BUILTIN.items() if spec.extra in MODULES}


def test_every_framework_kind_has_a_contract_subclass():
    covered = set()
    for name in MODULES:
        module = importlib.import_module(f"{__package__}.test_{name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ModelContract) and cls.__name__.startswith("Test"):
                covered.add(cls.kind)
    assert covered == FRAMEWORK_KINDS
    assert {BUILTIN[k].extra for k in FRAMEWORK_KINDS} == set(MODULES)


def test_the_readme_table_is_the_supports_order():
    text = README.read_text()
    section = text[text.index("## Model frameworks") :]
    rows = re.findall(r"^\| (\d+) \| `([a-z.]+)` \|", section, flags=re.MULTILINE)
    assert [int(n) for n, _ in rows] == list(range(1, len(SUPPORTS_ORDER) + 1))
    assert tuple(kind for _, kind in rows) == SUPPORTS_ORDER


def test_selection_does_not_depend_on_import_order():
    """Whatever a process imported first, an object goes to the same kind."""
    code = """
import sys
for name in sys.argv[1:]:
    __import__(name)
import lightgbm, numpy as np, xgboost
from omops.plugins import default_registry
X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
objects = [xgboost.XGBClassifier(n_estimators=2).fit(X, y), lightgbm.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, y)]
print([default_registry().select(o, "models").kind for o in objects])
"""
    seen = set()
    for first in (["sklearn.linear_model"], ["xgboost", "sklearn"], ["lightgbm", "torch"]):
        done = subprocess.run(
            [sys.executable, "-c", code, *first], capture_output=True, text=True, check=True
        )
        seen.add(done.stdout.strip())
    assert seen == {"['xgboost.model', 'lightgbm.model']"}
