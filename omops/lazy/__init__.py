"""Lazy frames: DataFrames computed in DuckDB and read when asked for (``om.datasets.getl``)."""

from omops.lazy._engine import Engine
from omops.lazy.frame import LazyFrame, LazyGroupBy
from omops.lazy.sources import (
    ArrowSource,
    ExternalSource,
    ParquetSource,
    Source,
    TransformSource,
)

__all__ = [
    "ArrowSource",
    "ExternalSource",
    "Engine",
    "LazyFrame",
    "LazyGroupBy",
    "ParquetSource",
    "Source",
    "TransformSource",
]
