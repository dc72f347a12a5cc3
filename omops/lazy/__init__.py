"""Lazy frames: DataFrames computed in DuckDB and read when asked for (``om.datasets.getl``).

Only the engine is imported with the package: the frames and their sources
need pyarrow, which ``import omops`` does not load until a lazy frame is made.
"""

from typing import Any

from omops.lazy._engine import Engine

__all__ = [
    "ArrowSource",
    "Engine",
    "ExternalSource",
    "LazyFrame",
    "LazyGroupBy",
    "ParquetSource",
    "Source",
    "TransformSource",
]

_FRAMES = ("LazyFrame", "LazyGroupBy")
_SOURCES = ("ArrowSource", "ExternalSource", "ParquetSource", "Source", "TransformSource")


def __getattr__(name: str) -> Any:
    if name in _FRAMES:
        from omops.lazy import frame

        return getattr(frame, name)
    if name in _SOURCES:
        from omops.lazy import sources

        return getattr(sources, name)
    raise AttributeError(f"module 'omops.lazy' has no attribute {name!r}")
