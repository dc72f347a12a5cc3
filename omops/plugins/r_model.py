"""``r.model``: R models through rpy2, stored with ``saveRDS``.

Any R object an rpy2 call returned (a ``randomForest``, ``lm``, ``glm`` ...)
is stored as an RDS file; the R packages whose ``predict`` method it uses are
recorded and attached again when it is read back. Predictions take a
DataFrame, sent to R as a ``data.frame`` (numbers, booleans, strings,
categories), and call ``stats::predict(model, newdata=...)``; ``fit`` refits a
formula model on new data with ``stats::update``.

R is one interpreter per process and not thread-safe: every call into R holds
:data:`R_LOCK`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins._frameworks import (
    blob_file,
    check_action,
    columns_of,
    describe_model,
    scratch,
    stored_file,
)
from omops.plugins.base import ActionOutcome, Plugin, ReadQuery, Stored

__all__ = ["R_LOCK", "RPlugin"]

KIND = "r.model"
#: Embedded R is a process-wide singleton that must be entered by one thread
#: at a time, so this lock is process-wide too (it guards R, not omops state).
R_LOCK = threading.RLock()
_INSTALL_R = (
    "install R (Debian/Ubuntu: apt-get install r-base-core) and the R packages your "
    "models use (e.g. apt-get install r-cran-randomforest)"
)
#: R helpers, defined once per process in an environment of their own.
_HELPERS = r"""
local({
  packages <- function(m) {
    found <- character(0)
    for (cl in class(m)) {
      f <- utils::getS3method("predict", cl, optional = TRUE)
      if (!is.null(f)) {
        name <- environmentName(environment(f))
        if (nzchar(name) && !(name %in% c("base", "stats", "R_GlobalEnv"))) found <- c(found, name)
      }
    }
    unique(found)
  }
  columns <- function(m) {
    cols <- tryCatch(all.vars(stats::delete.response(stats::terms(m))), error = function(e) NULL)
    if (is.null(cols) || length(cols) == 0 || "." %in% cols)
      cols <- tryCatch(names(m$forest$xlevels), error = function(e) NULL)
    as.character(cols)
  }
  response <- function(m) {
    tryCatch(all.vars(stats::formula(m))[1], error = function(e) NA_character_)
  }
  refit <- function(m, data) stats::update(m, data = data)
  attach_packages <- function(names) {
    for (p in names) suppressPackageStartupMessages(library(p, character.only = TRUE))
  }
  list(packages = packages, columns = columns, response = response, refit = refit,
       attach_packages = attach_packages)
})
"""


def _robjects() -> Any:
    try:
        import rpy2  # noqa: F401
    except ImportError:
        raise PluginError(
            f"kind {KIND!r} needs rpy2 and R: pip install 'omops[r]', and {_INSTALL_R}"
        ) from None
    library_path = os.environ.get("LD_LIBRARY_PATH")
    try:
        import rpy2.robjects as ro
    except Exception as exc:  # noqa: BLE001 - rpy2 fails in many ways when R is missing or too old
        raise PluginError(f"kind {KIND!r}: rpy2 cannot start R ({exc}); {_INSTALL_R}") from None
    finally:
        _restore_library_path(library_path)
    return ro


def _restore_library_path(before: str | None) -> None:
    """Undo rpy2's ``LD_LIBRARY_PATH`` (R's and the system's library folders first).

    R is loaded by then; only processes started later would see it, and their
    Python would load the system's ``libpython`` instead of its own (Celery
    workers, process pools, servers started from this process).
    """
    if before is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = before


@contextmanager
def _in_r(ro: Any) -> Iterator[None]:
    """Hold R, with rpy2's default conversions (kept per thread: a server's threads have none)."""
    from rpy2.robjects.conversion import localconverter

    with R_LOCK, localconverter(ro.default_converter):
        yield


def _helpers(ro: Any) -> Any:
    """The R helper functions (made on first use, kept in R's global options)."""
    found = ro.r("getOption('omops.helpers')")
    if found is ro.NULL or not len(found):
        found = ro.r(_HELPERS)
        ro.r["options"](**{"omops.helpers": found})
    return found


class RPlugin(Plugin):
    """R objects returned by rpy2 (models: anything ``stats::predict`` takes).

    ``kind_meta``: ``r_class``, ``r_version``, ``r_packages`` (attached before
    reading), ``feature_names`` (the model's predictor variables, when R can
    tell), ``response``.
    """

    kind = KIND
    stores = ("models",)
    actions = frozenset({"fit", "predict", "predict_proba"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        sexp = sys.modules.get("rpy2.rinterface_lib.sexp")
        return sexp is not None and isinstance(obj, sexp.Sexp)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        ro = _robjects()
        if not self.supports(obj):
            raise InvalidData(f"kind {KIND!r} stores R objects (rpy2), got {type(obj).__name__}")
        with _in_r(ro), scratch() as folder:
            helpers = _helpers(ro)
            path = folder / "model.rds"
            ro.r["saveRDS"](obj, file=str(path))
            meta: dict[str, Any] = {
                "r_class": list(ro.r["class"](obj)),
                "r_version": str(ro.r("R.version.string")[0]),
                "r_packages": list(helpers.rx2("packages")(obj)),
            }
            columns = list(helpers.rx2("columns")(obj))
            response = helpers.rx2("response")(obj)[0]
            part = stored_file(blobs, path)
        if columns:
            meta["feature_names"] = [str(c) for c in columns]
            meta["n_features"] = len(columns)
        if isinstance(response, str):
            meta["response"] = response
        return Stored(parts=[part], kind_meta=meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        ro = _robjects()
        self._no_query(query)
        with _in_r(ro):
            _attach(ro, kind_meta.get("r_packages", []))
            with blob_file(blobs, self._single(parts, self.kind).blob, "model.rds") as path:
                return ro.r["readRDS"](str(path))

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("r_class", "r_packages", "feature_names", "response"))

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        ro = _robjects()
        check_action(KIND, self.actions, action)
        if columns_of(X) is None:
            raise InvalidData(f"kind {KIND!r} takes a table with named columns (a DataFrame)")
        from rpy2.rinterface_lib.embedded import RRuntimeError

        with _in_r(ro):
            try:
                if action == "fit":
                    return ActionOutcome(model=self._refit(ro, obj, X, y))
                if action == "predict_proba":
                    kwargs.setdefault("type", "prob")
                result = ro.r["predict"](obj, newdata=_r_frame(ro, X), **kwargs)
                return ActionOutcome(result=_from_r(ro, result))
            except RRuntimeError as exc:
                raise InvalidData(f"R could not {action} this input: {exc}".strip()) from None

    def _refit(self, ro: Any, model: Any, X: Any, y: Any) -> Any:  # noqa: N803
        response = _helpers(ro).rx2("response")(model)[0]
        if not isinstance(response, str):
            raise InvalidData(
                "this R model was not fitted with a formula, so omops cannot refit it; "
                "fit it in R and put the new model"
            )
        if y is None:
            raise InvalidData(f"fit needs targets: give Y (the model's response {response!r})")
        data = X.copy()
        targets = y.to_numpy() if hasattr(y, "to_numpy") else y
        classes = model.rx2("classes") if "classes" in list(model.names or []) else ro.NULL
        # a classifier (it has classes) gets its response as a factor, as R fitted it
        data[response] = [str(v) for v in targets] if classes is not ro.NULL else list(targets)
        frame = _r_frame(ro, data, factors={response} if classes is not ro.NULL else set())
        return _helpers(ro).rx2("refit")(model, frame)


def _attach(ro: Any, packages: Sequence[str]) -> None:
    from rpy2.rinterface_lib.embedded import RRuntimeError

    for package in packages:
        try:
            _helpers(ro).rx2("attach_packages")(ro.StrVector([package]))
        except RRuntimeError:
            raise PluginError(
                f"the R package {package!r} that this model needs is not installed: "
                f"apt-get install r-cran-{package.lower()} (Debian/Ubuntu) or "
                f"R -e 'install.packages(\"{package}\")'"
            ) from None


def _r_frame(ro: Any, X: Any, *, factors: set[str] | frozenset[str] = frozenset()) -> Any:  # noqa: N803
    """A pandas DataFrame as an R data.frame, column names kept as they are."""
    import pandas as pd
    from rpy2.rlike.container import OrdDict

    columns = OrdDict()
    for name in X.columns:
        series = X[name]
        dtype = series.dtype
        if name in factors or isinstance(dtype, pd.CategoricalDtype):
            values = series.astype(str).tolist()
            levels = (
                [str(c) for c in dtype.categories]
                if isinstance(dtype, pd.CategoricalDtype)
                else sorted(set(values))
            )
            vector = ro.FactorVector(ro.StrVector(values), levels=ro.StrVector(levels))
        elif pd.api.types.is_bool_dtype(dtype):
            vector = ro.BoolVector(series.tolist())
        elif pd.api.types.is_integer_dtype(dtype) and not series.isna().any():
            vector = ro.IntVector(series.tolist())
        elif pd.api.types.is_numeric_dtype(dtype):
            vector = ro.FloatVector(series.to_numpy(dtype="float64", na_value=float("nan")))
        else:
            vector = ro.StrVector(series.astype(str).tolist())
        columns[str(name)] = vector
    frame = ro.DataFrame(columns)
    frame.names = ro.StrVector([str(c) for c in X.columns])
    return frame


def _from_r(ro: Any, value: Any) -> Any:
    """An R result as NumPy: a factor as its labels, a matrix in its shape, a vector as 1-D."""
    import numpy as np

    if isinstance(value, ro.FactorVector):
        levels = list(ro.r["levels"](value))  # (FactorVector.levels warns inside rpy2)
        return np.array([levels[i - 1] if i > 0 else None for i in np.asarray(value)], dtype=object)
    dim = ro.r["dim"](value)
    array = np.asarray(value)
    if dim is not ro.NULL and len(dim) == 2:
        return array.reshape((int(dim[0]), int(dim[1])), order="F")
    return array
