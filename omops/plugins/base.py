"""The plugin contract: every kind implements ``supports``, ``put`` and ``get``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, InvalidQuery

__all__ = ["ActionOutcome", "Plugin", "ReadQuery", "Stored", "TableStream"]


@dataclass(frozen=True)
class Stored:
    """What a plugin wrote: its blobs (in read order) and what it needs to read them."""

    parts: list[PartRecord]
    kind_meta: dict[str, Any]


@dataclass(frozen=True)
class ReadQuery:
    """What a reader asked for beyond the object: columns, row filters, a window of rows.

    ``offset`` and ``limit`` apply after the filters (rows ``offset`` to
    ``offset + limit`` of the filtered result) and are pushed into the read:
    rows outside the window are not loaded.
    """

    columns: Sequence[str] | None = None
    exclude: bool = False
    filters: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    offset: int = 0
    #: The kind's own read options (:attr:`Plugin.read_options`: ``sql=``, ``table=`` ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Fills ``{placeholders}`` in text from ``secrets=`` and ``om.secrets``
    #: (never from the environment); None where the repository gave none.
    fill: Callable[[str], str] | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.columns is None
            and not self.filters
            and self.limit is None
            and not self.offset
            and not self.options
        )

    def filled(self, text: str) -> str:
        """``text`` with its ``{placeholders}`` filled (see :attr:`fill`)."""
        if self.fill is None:
            from omops.secrets import PLACEHOLDER

            found = PLACEHOLDER.search(text)
            if found:
                raise InvalidQuery(
                    f"placeholder {{{found[1]}}} has no value: read through a repository "
                    "(om.datasets.get) with secrets= or om.secrets"
                )
            return text
        return self.fill(text)


@dataclass
class TableStream:
    """Rows of a tabular read as Arrow record batches, read while they are consumed.

    Attributes
    ----------
    schema : pyarrow.Schema
        The schema of every batch: the data columns asked for, then the index
        columns, with the pandas metadata that rebuilds the frame.
    data_columns : list of str
        The columns that are data, not index (what a JSON answer holds).
    batches : iterator of pyarrow.RecordBatch
        The rows, in order. Reading starts with the first ``next()``.
    count : callable
        The number of rows the stream yields, without yielding them (may run
        one scan of the filtered columns).
    """

    schema: Any
    data_columns: list[str]
    batches: Iterator[Any]
    count: Callable[[], int]

    def close(self) -> None:
        """Stop reading early and release what the reader holds (files, a database cursor)."""
        close = getattr(self.batches, "close", None)
        if callable(close):
            close()


@dataclass(frozen=True)
class ActionOutcome:
    """What a model action produced.

    Attributes
    ----------
    result : object
        The action's return value (predictions, a score, a summary dict ...).
    model : object or None
        The changed model, to store as a new revision (fit, partial_fit ...).
    models, datasets : dict
        Further objects to store by name (e.g. a grid search and its results).
    """

    result: Any = None
    model: Any = None
    models: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)


class Plugin:
    """Base of all plugins. Subclasses set ``kind`` and override the verbs.

    A plugin instance holds no state about stored objects: everything it needs
    to read an object back is in the parts and ``kind_meta`` it returned from
    :meth:`put`.
    """

    #: The kind this plugin writes, e.g. ``"pandas.dataframe"``.
    kind: ClassVar[str] = ""
    #: Repositories that accept this kind (``datasets``, ``models`` ...).
    stores: ClassVar[tuple[str, ...]] = ("datasets",)
    #: Whether ``put(..., append=True)`` adds to the previous revision.
    appendable: ClassVar[bool] = False
    #: Keyword arguments ``put`` takes for this kind (passed as ``options=``).
    put_options: ClassVar[frozenset[str]] = frozenset()
    #: Keyword arguments ``get`` takes for this kind besides filters (in
    #: :attr:`ReadQuery.options`); ``secrets`` is the repository's: it fills
    #: :attr:`ReadQuery.fill`.
    read_options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def supports(cls, obj: Any) -> bool:
        """Whether this plugin can store ``obj`` when no ``kind=`` is given.

        Must not import optional frameworks: if the framework is not imported
        yet, ``obj`` cannot be one of its objects.
        """
        return False

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        """Write ``obj`` into ``blobs``. ``base`` is the revision an append extends.

        Plugins with :attr:`put_options` also take ``options=`` (a mapping of them).
        """
        raise NotImplementedError

    def snapshot(self, obj: Any, *, options: Mapping[str, Any], query: ReadQuery) -> Any:
        """What ``obj`` (a link to data) holds now, to store instead (``put(copy=True)``).

        ``options`` are the put options given, ``query`` the read options and
        filters. Only kinds that link to data elsewhere implement it.
        """
        raise InvalidData(f"kind {self.kind!r} stores the object itself; put it without copy=")

    def extend(self, stored: Stored, base: RevisionRecord | None) -> dict[str, Any]:
        """Inside the commit: the ``kind_meta`` of ``stored`` appended to ``base``.

        ``base`` is the revision the new one extends, read under the commit's
        lock (``None`` when it replaces). Raise if ``stored`` does not fit it.
        """
        return stored.kind_meta

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        """Read the object back."""
        raise NotImplementedError

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        """Extra, user-facing metadata (e.g. columns) for ``metadata(name)``."""
        return {}

    #: Whether the kind reads through Arrow tables: :meth:`read_table`,
    #: :meth:`from_table` and :meth:`stream` are implemented. Small reads of
    #: such kinds are cached as the (immutable) table, and every read builds a
    #: new object from it; the REST server streams them.
    caches_reads: ClassVar[bool] = False
    #: Whether :meth:`stream` is implemented (every kind that ``caches_reads``,
    #: and tables read elsewhere at get time, which are never cached).
    tabular: ClassVar[bool] = False

    def read_table(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        """The object as a ``pyarrow.Table`` (kinds with ``caches_reads``)."""
        raise NotImplementedError

    def from_table(self, table: Any, kind_meta: Mapping[str, Any]) -> Any:
        """A new object from a table :meth:`read_table` gave; the table must stay unchanged."""
        raise NotImplementedError

    def safe_copy(self, obj: Any) -> Any | None:
        """A copy of ``obj`` (built by :meth:`from_table`) sharing nothing a caller could
        change, or None when only :meth:`from_table` can make one. The read cache keeps
        such a copy and hands out copies of it, else it keeps the table."""
        return None

    def stream(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
        batch_rows: int = 65_536,
    ) -> TableStream:
        """The rows as a :class:`TableStream` (kinds with ``caches_reads``)."""
        raise InvalidQuery(f"kind {self.kind!r} is not a table; read it whole")

    def lazy_source(
        self, blobs: Blobs, parts: Sequence[PartRecord], kind_meta: Mapping[str, Any]
    ) -> Any:
        """The rows as a :class:`omops.lazy.sources.Source`, for ``getl`` (tabular kinds).

        A source is a DuckDB relation over the rows plus their schema; a
        kind that can give one gets every lazy-frame operation for free.
        """
        raise InvalidQuery(
            f"kind {self.kind!r} has no rows to read lazily; getl reads DataFrames, "
            "read this object with get"
        )

    #: Actions the runtime can run on objects of this kind (model plugins).
    actions: ClassVar[frozenset[str]] = frozenset()

    def perform(self, obj: Any, action: str, X: Any, y: Any, **kwargs: Any) -> ActionOutcome:  # noqa: N803
        """Run ``action`` (fit, predict ...) on a loaded object."""
        raise InvalidData(f"kind {self.kind!r} has no actions; store a model to run {action!r}")

    def takes_arrays(self, obj: Any) -> bool:
        """Whether ``obj`` computes the same from a NumPy array as from a DataFrame.

        The array holds the DataFrame's numeric values, columns in the order
        the model was fitted with. The REST server then skips building a
        DataFrame for small numeric requests. Answer True only when the model
        never looks at column names or dtypes beyond that; the default is False.
        """
        return False

    def array_view(self, obj: Any) -> Any:
        """The object :meth:`perform_array` is called with, made once per loaded revision.

        By default ``obj`` itself. A plugin may return a view of the model
        that expects arrays (e.g. without its fitted column names, so that
        the framework does not warn about an array it is sent on purpose);
        it must share the model's fitted state, not copy it.
        """
        return obj

    def perform_array(self, obj: Any, action: str, X: Any) -> ActionOutcome:  # noqa: N803
        """``perform`` on an array that stands for a DataFrame (see :meth:`takes_arrays`).

        ``obj`` is what :meth:`array_view` returned for the model.
        """
        return self.perform(obj, action, X, None)

    # -- helpers for subclasses --------------------------------------------

    def _no_query(self, query: ReadQuery | None) -> None:
        if query is not None and not query.is_empty:
            raise InvalidQuery(
                f"filters and column selectors apply to DataFrames, not to kind {self.kind!r}"
            )

    @staticmethod
    def _single(parts: Sequence[PartRecord], kind: str) -> PartRecord:
        if len(parts) != 1:
            raise InvalidData(f"a {kind} revision must have one part, found {len(parts)}")
        return parts[0]
