"""Tiny script packages, written into folders by the tests and built for real."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: The dependency of the ``uses-dep`` script: a local package, built into a wheel
#: by the tests, that pip installs from a folder (no package index).
DEP_DIST = "omops-test-dep"
DEP_MODULE = "omops_test_dep"

ECHO = """
import os, sys

def run(om, **kwargs):
    print("hello from the script")
    print("to stderr", file=sys.stderr)
    return {
        "kwargs": kwargs,
        "bucket": om.bucket,
        "prefix": sys.prefix,
        "pid": os.getpid(),
    }
"""

RAISES = """
def helper(n):
    raise ValueError(f"n must be positive, got {n}")

def run(om, n=0):
    print("about to fail")
    return helper(n)
"""

USES_DEP = f"""
import {DEP_MODULE}

def run(om):
    return {{"value": {DEP_MODULE}.VALUE, "file": {DEP_MODULE}.__file__}}
"""

WRITES = """
import pandas as pd
import omops

def run(om, rows=3, name="from-script"):
    om.datasets.put(pd.DataFrame({"x": list(range(rows))}), name, append=False)
    # `import omops` inside a script: the same store and bucket as its om
    return {"default": omops.datasets.list(), "bucket": omops.bucket}
"""

NOT_JSON = """
def run(om):
    return object()
"""

EXITS = """
import os

def run(om):
    os._exit(3)
"""


def make_package(
    root: Path,
    dist: str,
    code: str,
    *,
    version: str = "0.1",
    deps: tuple[str, ...] = (),
    layout: str = "pyproject",
    module: str | None = None,
    entry: str | None = None,
    extra_modules: tuple[str, ...] = (),
) -> Path:
    """Write a package ``dist`` with one module holding ``code``; returns its folder.

    ``layout``: ``pyproject`` (PEP 621 + setuptools) or ``setup.py`` (setup.py only).
    ``entry``: an ``omops.scripts`` entry point (``module:function``).
    """
    folder = root / f"{dist}-{version}"
    module = module or dist.replace("-", "_")
    for name, text in ((module, code), *((m, "") for m in extra_modules)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(textwrap.dedent(text))
    packages = [module, *extra_modules]
    if layout == "setup.py":
        entry_points = {"omops.scripts": [f"run = {entry}"]} if entry else {}
        (folder / "setup.py").write_text(
            "from setuptools import setup\n"
            f"setup(name={dist!r}, version={version!r}, packages={packages!r}, "
            f"install_requires={list(deps)!r}, entry_points={entry_points!r})\n"
        )
        return folder
    lines = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "[project]",
        f'name = "{dist}"',
        f'version = "{version}"',
        f"dependencies = {list(deps)!r}".replace("'", '"'),
        "[tool.setuptools]",
        f"packages = {packages!r}".replace("'", '"'),
    ]
    if entry:
        lines += ['[project.entry-points."omops.scripts"]', f'run = "{entry}"']
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return folder


def make_dependency(root: Path) -> Path:
    """The folder of :data:`DEP_DIST`, a package with ``VALUE = 42``."""
    return make_package(root, DEP_DIST, "VALUE = 42\n", module=DEP_MODULE)
