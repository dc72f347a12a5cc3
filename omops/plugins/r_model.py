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
    INPUT_COLUMNS,
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


class _Predictor:
    """An R model's array view: its predictor columns and R's ``predict``, found once.

    The array lane calls R through rpy2's low-level interface: no conversion
    context (a server thread has none), no lookup of ``predict`` per call.
    """

    __slots__ = ("columns", "model", "predict")

    def __init__(self, model: Any, columns: Sequence[str], predict: Any) -> None:
        self.model = model
        self.columns = list(columns)
        self.predict = predict


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
                model = ro.r["readRDS"](str(path))
        if kind_meta.get("feature_names"):
            # the columns the array lane orders its arrays by (see takes_arrays)
            setattr(model, INPUT_COLUMNS, tuple(kind_meta["feature_names"]))
        return model

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return describe_model(kind_meta, ("r_class", "r_packages", "feature_names", "response"))

    def takes_arrays(self, obj: Any) -> bool:
        """True for a model read back with its predictor columns (``feature_names``).

        The lane's arrays come in that column order; the data.frame built from
        one is the one a DataFrame of the same numbers gives (see ``_r_frame``).
        """
        return bool(getattr(obj, INPUT_COLUMNS, None))

    def array_view(self, obj: Any) -> Any:
        """The model with its columns and R's ``predict`` (a :class:`_Predictor`)."""
        return _predictor(obj) if getattr(obj, INPUT_COLUMNS, None) else obj

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """``predict(model, newdata=<data.frame of X's columns>)`` in one call into R.

        Without a conversion context or a pandas DataFrame: the data.frame is
        built from the array's columns (as :func:`_r_frame` builds it from a
        DataFrame), the result read back as :func:`_from_r` reads it.
        """
        if not isinstance(obj, _Predictor) or action not in ("predict", "predict_proba"):
            return super().perform_array(obj, action, X)  # the usual errors
        import rpy2.rinterface as ri
        from rpy2.rinterface_lib.embedded import RRuntimeError

        kwargs = {"type": "prob"} if action == "predict_proba" else {}
        with R_LOCK:
            frame = _data_frame(ri, obj.columns, [_r_numbers(ri, c) for c in X.T], len(X))
            try:
                result = obj.predict(obj.model, newdata=frame, **kwargs)
            except RRuntimeError as exc:
                raise InvalidData(f"R could not {action} this input: {exc}".strip()) from None
            return ActionOutcome(result=_from_r(result))

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
                # R's own predict at rpy2's low level, the arguments converted as rpy2 does
                convert = ro.conversion.get_conversion().py2rpy
                arguments = {k: convert(v) for k, v in kwargs.items()}
                result = _r_predict()(obj, newdata=_r_frame(ro, X), **arguments)
                return ActionOutcome(result=_from_r(result))
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


def _predictor(model: Any) -> _Predictor:
    """``model`` with its columns and R's ``predict`` generic."""
    return _Predictor(model, getattr(model, INPUT_COLUMNS, None) or (), _r_predict())


def _r_predict() -> Any:
    """R's ``predict`` as found from the global environment (``stats::predict`` unless a
    package masks it), at rpy2's low level: called without a conversion context."""
    import rpy2.rinterface as ri

    with R_LOCK:
        return ri.globalenv.find("predict")


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
    """A pandas DataFrame as an R data.frame, column names kept as they are.

    The same object as R's ``data.frame(..., stringsAsFactors = FALSE,
    check.names = FALSE)`` of the columns, built without calling it.
    """
    import pandas as pd
    import rpy2.rinterface as ri

    vectors = []
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
            vector = ri.BoolSexpVector(series.tolist())
        elif pd.api.types.is_integer_dtype(dtype) and not series.isna().any():
            vector = _r_numbers(ri, series.to_numpy(dtype="int64"))
        elif pd.api.types.is_numeric_dtype(dtype):
            vector = _r_numbers(ri, series.to_numpy(dtype="float64", na_value=float("nan")))
        else:
            vector = ri.StrSexpVector(series.astype(str).tolist())
        vectors.append(vector)
    return _data_frame(ri, [str(c) for c in X.columns], vectors, len(X))


#: R integers are 32 bits, and the smallest one is R's NA.
_R_INT = 2**31 - 1


def _r_numbers(ri: Any, values: Any) -> Any:
    """A 1-D NumPy array of numbers as an R vector: integer where R's integers hold them.

    Integers beyond R's 32-bit range become doubles (R's own ``as.numeric``),
    not an error.
    """
    import numpy as np

    if values.dtype.kind in "iu":
        if not len(values) or (values.min() >= -_R_INT and values.max() <= _R_INT):
            return ri.IntSexpVector(np.ascontiguousarray(values, dtype=np.int32))
    return ri.FloatSexpVector(np.ascontiguousarray(values, dtype=np.float64))


def _data_frame(ri: Any, names: list[str], vectors: list[Any], rows: int) -> Any:
    """R's ``data.frame`` of equally long vectors, as ``data.frame()`` makes it (identical()).

    Attributes set directly (names, class, compact row names): ~0.1 ms where
    calling ``data.frame`` through rpy2 takes ~1 ms for a row of 8 numbers.
    """
    frame = ri.ListSexpVector(vectors)
    frame.do_slot_assign("names", ri.StrSexpVector(names))
    # through R's `oldClass<-`: it also marks the list as an object, which S3 dispatch needs
    frame = ri.baseenv.find("oldClass<-")(frame, ri.StrSexpVector(["data.frame"]))
    compact = [ri.NA_Integer, -rows] if rows else []  # R's .set_row_names(rows)
    frame.do_slot_assign("row.names", ri.IntSexpVector(compact))
    return frame


def _from_r(value: Any) -> Any:
    """An R result as NumPy: a factor as its labels, a matrix in its shape, a vector as 1-D.

    Reads rpy2's high- and low-level vectors alike (attributes, not R calls).
    """
    import numpy as np

    attributes = set(value.list_attrs())
    if "levels" in attributes and "factor" in value.rclass:
        levels = list(value.do_slot("levels"))
        return np.array([levels[i - 1] if i > 0 else None for i in np.asarray(value)], dtype=object)
    array = np.asarray(value)
    if "dim" in attributes:
        dim = value.do_slot("dim")
        if len(dim) == 2:
            return array.reshape((int(dim[0]), int(dim[1])), order="F")
    return array
