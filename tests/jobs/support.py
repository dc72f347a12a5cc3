"""Notebooks for the jobs suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook(*sources: str, parameters: str | None = None) -> Any:
    """A Python notebook of code cells; ``parameters`` is a first cell tagged 'parameters'."""
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        cells.insert(0, cell)
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC)})


def stdout_of(executed: Any) -> str:
    """Everything the executed notebook's cells printed."""
    return "".join(
        output.get("text", "")
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def wait_for(check: Callable[[], Any], what: str, *, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it answers something true."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
