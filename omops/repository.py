"""The repository: one store of named, revisioned objects.

``om.datasets``, ``om.models``, ``om.jobs``, ``om.scripts`` and ``om.streams``
are all :class:`Repository` instances with the same verbs. A repository knows
names, buckets and revisions; the bytes are the plugins' business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from omops.blobs import Blobs
from omops.catalog import Catalog, MissingBlobs, NewRevision, ObjectRecord, RevisionRecord
from omops.config import mask_url
from omops.errors import (
    InvalidData,
    InvalidName,
    InvalidQuery,
    NotFound,
    PluginError,
    StorageError,
)
from omops.lazy import Engine
from omops.metadata import Metadata
from omops.names import Reference, check_name, check_ref, check_tag, parse_reference
from omops.plugins import ReadQuery, Registry, TableStream, default_registry
from omops.plugins.external import EXTERNAL_KINDS
from omops.query import select_columns
from omops.readcache import ReadCache
from omops.reading import guarded, reading
from omops.secrets import Secrets

if TYPE_CHECKING:
    from omops.lazy import ExternalSource, LazyFrame

# Metadata and ReadCache live in their own modules; importable from here as before.
__all__ = ["STORES", "Metadata", "ReadCache", "Repository"]

#: Writes of one put when concurrent drops keep deleting its blobs (see Catalog.delete_unused).
_PUT_ATTEMPTS = 5


#: The repositories every Omega instance has.
STORES: tuple[str, ...] = ("datasets", "models", "jobs", "scripts", "streams")


def _tags(tag: str | Sequence[str] | None) -> list[str]:
    if tag is None:
        return []
    names = list(tag) if isinstance(tag, (list, tuple, set, frozenset)) else [tag]
    return [check_tag(t) for t in names]


class Repository:
    """A store of named objects in one bucket.

    Parameters
    ----------
    store : str
        ``datasets``, ``models``, ``jobs``, ``scripts`` or ``streams``.
    catalog : Catalog
    blobs : Blobs
    bucket : str, default='default'
    plugins : Registry, optional
        Defaults to the built-in kinds plus entry-point plugins.
    reads : ReadCache, optional
        Where small reads are kept; an Omega hands all its repositories its
        own. By default the repository has one of its own.
    secrets : Secrets, optional
        Where ``{placeholders}`` of connection strings and URLs are filled
        from (``om.secrets``); by default the bucket's secrets without a key.
    lazy : Engine, optional
        The DuckDB databases lazy frames (:meth:`getl`) run in; an Omega hands
        its repositories its own (``OMOPS_MEMORY_LIMIT``, ``OMOPS_SPILL``).
    """

    def __init__(
        self,
        store: str,
        *,
        catalog: Catalog,
        blobs: Blobs,
        bucket: str = "default",
        plugins: Registry | None = None,
        reads: ReadCache | None = None,
        secrets: Secrets | None = None,
        lazy: Engine | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.blobs = blobs
        self.bucket = bucket
        self.plugins = plugins or default_registry()
        self.reads = reads if reads is not None else ReadCache(None)
        self.secrets = secrets if secrets is not None else Secrets(catalog, bucket, key=None)
        self.lazy = lazy if lazy is not None else Engine()

    def __repr__(self) -> str:
        return f"Repository({self.store!r}, bucket={self.bucket!r}, catalog={self.catalog!r})"

    # -- writing -----------------------------------------------------------

    def put(
        self,
        obj: Any,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        kind: str | None = None,
        append: bool | None = None,
        tag: str | Sequence[str] | None = None,
        copy: bool = False,
        **options: Any,
    ) -> Metadata:
        """Store ``obj`` under ``name`` as a new revision.

        Parameters
        ----------
        obj : object
            What to store; the plugin is chosen by ``kind`` or by type.
        name : str
            A path such as ``'sales'`` or ``'prod/forecast'``.
        attributes : dict, optional
            User attributes, merged into the existing ones.
        kind : str, optional
            Force a plugin, e.g. ``'python.pickle'``.
        append : bool, optional
            For DataFrames and Series: add rows to the latest revision (the
            default) or, with ``False``, replace them. Other kinds always replace.
        tag : str or list of str, optional
            Tags to put on the new revision, besides ``latest``.
        copy : bool, default=False
            For links to data (``url.dataset``, ``sql.connection``): read the
            data now and store it as a DataFrame (a normal revisioned dataset,
            replaced unless ``append=True``) instead of the link. The read
            takes the kind's read options and filters, and ``secrets=``.
        **options
            The kind's own options (``format=`` and ``storage_options=`` of
            ``url.dataset``).

        Returns
        -------
        Metadata
            The new revision's metadata.

        Examples
        --------
        >>> import pandas as pd, omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> om.datasets.put(pd.DataFrame({'sales': [10, 200]}), 'stats').rows
        2
        >>> om.datasets.put(pd.DataFrame({'sales': [300]}), 'stats').rows
        3
        """
        check_name(name)
        tags = _tags(tag)
        plugin = self.plugins.select(obj, self.store, kind)
        if copy:
            obj, attributes = self._snapshot(plugin, obj, options, attributes)
            plugin, options = self.plugins.select(obj, self.store), {}
            append = False if append is None else append
        unknown = sorted(set(options) - plugin.put_options)
        if unknown:
            takes = ", ".join(sorted(plugin.put_options)) or "none"
            raise InvalidData(
                f"put() got option(s) {unknown} that kind {plugin.kind!r} does not take "
                f"(it takes: {takes})"
            )
        if append and not plugin.appendable:
            raise InvalidData(f"kind {plugin.kind!r} cannot be appended to; put with append=False")
        append = plugin.appendable if append is None else append
        base = self._append_base(name, plugin.kind) if append else None
        for attempt in range(_PUT_ATTEMPTS):
            # Our blobs stay locked until the commit: a sweep meanwhile leaves them alone.
            with self.blobs.holding():
                if options:
                    stored = plugin.put(obj, self.blobs, base=base, options=options)
                else:
                    stored = plugin.put(obj, self.blobs, base=base)
                new = NewRevision(
                    kind=plugin.kind,
                    kind_meta=stored.kind_meta,
                    parts=stored.parts,
                    append=append,
                    tags=tags,
                    attributes=attributes,
                    extend=lambda b, stored=stored: plugin.extend(stored, b),
                    missing=self._missing,
                )
                try:
                    record, revision = self.catalog.commit(self.bucket, self.store, name, new)
                except MissingBlobs:
                    # A concurrent drop deleted a blob of the same content as
                    # ours after we wrote it: write it again.
                    if attempt == _PUT_ATTEMPTS - 1:
                        raise
                    continue
                except BaseException:
                    self._forget_blobs([p.blob for p in stored.parts])
                    raise
            return self._metadata(record, revision, ["latest", *tags])
        raise AssertionError("unreachable")

    def _snapshot(
        self,
        plugin: Any,
        obj: Any,
        options: dict[str, Any],
        attributes: Mapping[str, Any] | None,
    ) -> tuple[Any, dict[str, Any]]:
        """``put(copy=True)``: what the link ``obj`` holds now, and attributes naming it."""
        given = options.pop("secrets", None)
        reading = {k: options.pop(k) for k in list(options) if k in plugin.read_options}
        put_options = {k: options.pop(k) for k in list(options) if k in plugin.put_options}
        columns = options.pop("columns", None)
        query = ReadQuery(
            columns=columns, filters=options, options=reading, fill=self._filler(given)
        )
        data = plugin.snapshot(obj, options=put_options, query=query)
        options.clear()  # the filters were the snapshot's, not put options
        source = mask_url(obj.strip()) if isinstance(obj, str) else type(obj).__name__
        return data, {**(attributes or {}), "copied_from": source}

    def _filler(self, given: Mapping[str, str] | None) -> Any:
        """What fills ``{placeholders}``: ``secrets=`` first, then ``om.secrets``."""
        if given is not None and not isinstance(given, Mapping):
            raise InvalidQuery(
                f"secrets= must be a dict of placeholder names to values, got "
                f"{type(given).__name__}"
            )
        return lambda text: self.secrets.fill(text, given)

    def _missing(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if not self.blobs.exists(key)]

    def _append_base(self, name: str, kind: str) -> RevisionRecord | None:
        record = self.catalog.find(self.bucket, self.store, name)
        if record is None:
            return None
        try:
            latest = self.catalog.resolve(record.id)
        except NotFound:
            return None
        return latest if latest.kind == kind else None

    def _forget_blobs(self, blobs: Sequence[str]) -> None:
        """Delete blobs written by a put that did not commit, unless in use."""
        self.catalog.delete_unused(blobs, self.blobs.delete)

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Delete ``name`` with all its revisions.

        Returns True; with ``force=True`` a missing name returns False instead
        of raising NotFound.
        """
        check_name(name)
        record = self.catalog.find(self.bucket, self.store, name)
        if record is None:
            if force:
                return False
            self.catalog.get(self.bucket, self.store, name)  # raises NotFound
        self.catalog.delete_unused(self.catalog.drop(record), self.blobs.delete)
        return True

    def tag(self, name: str, revision: str, tag: str) -> None:
        """Point ``tag`` at ``revision`` (a revision id prefix, another tag, ``^`` ...)."""
        check_tag(tag)
        check_ref(revision)
        record = self._record(name)
        self.catalog.set_tag(record.id, self.catalog.resolve(record.id, revision), tag)

    def untag(self, name: str, tag: str) -> None:
        """Remove a tag; ``latest`` always stays."""
        if check_tag(tag) == "latest":
            raise InvalidName("'latest' cannot be removed; it always names the newest revision")
        record = self._record(name)
        self.catalog.resolve(record.id, tag)  # NotFound for an unknown tag
        self.catalog.remove_tag(record, tag)

    def set_attributes(self, name: str, attributes: Mapping[str, Any]) -> None:
        """Replace the user attributes of ``name``."""
        if not isinstance(attributes, Mapping):
            raise InvalidData(f"attributes must be a dict, got {type(attributes).__name__}")
        self.catalog.set_attributes(self._record(name), attributes)

    def promote(self, name: str, target: Repository, *, asname: str | None = None) -> Metadata:
        """Copy ``name`` (its latest or given revision) into ``target``.

        ``target`` may be another bucket or another Omega instance; blobs are
        copied when it uses another blob store. The copy records its origin.

        Examples
        --------
        >>> import omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om['dev'].datasets.put({'a': 1}, 'conf')
        >>> om['prod'].datasets.get('conf') if om['dev'].datasets.promote('conf', om['prod'].datasets) else None
        {'a': 1}
        """
        ref = parse_reference(name)
        if ref.columns is not None:
            raise InvalidName(f"promote takes a name, not a column selector: {name!r}")
        asname = check_name(ref.name if asname is None else asname)
        record = self._record(ref.name)
        revision = self.catalog.resolve(record.id, ref.ref)
        plugin = target.plugins.get(revision.kind)
        if target.store not in plugin.stores:
            raise PluginError(
                f"{self.store} {ref.name!r} has kind {revision.kind!r}, which cannot be "
                f"stored in {target.store}; promote it to {', '.join(plugin.stores)}"
            )
        parts = self.catalog.parts(revision)
        origin = {
            "bucket": self.bucket,
            "store": self.store,
            "name": ref.name,
            "revision": revision.revision,
            "catalog": repr(self.catalog),
            "promoted": dt.datetime.now(dt.UTC).isoformat(),
        }
        new = NewRevision(
            kind=revision.kind,
            kind_meta=revision.kind_meta,
            parts=parts,
            append=False,
            attributes=record.attributes,
            origin=origin,
            missing=target._missing,
        )
        for attempt in range(_PUT_ATTEMPTS):
            for part in parts:
                target.blobs.copy_from(self.blobs, part.blob)
            try:
                obj, promoted = target.catalog.commit(target.bucket, target.store, asname, new)
            except MissingBlobs:  # deleted by a concurrent drop in the target: copy again
                if attempt == _PUT_ATTEMPTS - 1:
                    raise
                continue
            return target._metadata(obj, promoted, ["latest"])
        raise AssertionError("unreachable")

    # -- reading -----------------------------------------------------------

    def get(
        self,
        name: str,
        /,
        *,
        columns: Sequence[str] | None = None,
        revision: str | None = None,
        filters: Mapping[str, Any] | None = None,
        **kwfilters: Any,
    ) -> Any:
        """Read ``name`` back, optionally one revision, some columns, some rows.

        Parameters
        ----------
        name : str
            ``name``, ``name@tag``, ``name@<revision prefix>``, each optionally
            with ``[a,b]`` (these columns) or ``[^a,b]`` (all but these).
        columns : list of str, optional
            Columns to read (DataFrames); same as ``name[a,b]``.
        revision : str, optional
            Tag or revision prefix; same as ``name@...``.
        filters : dict, optional
            Filters as a dict, for columns named like a parameter of ``get``
            (``{'columns__gt': 1}``); merged with ``**kwfilters``.
        **kwfilters
            ``col=value`` or ``col__op=value`` with op one of eq, ne, lt, lte,
            gt, gte, in, nin, between, contains, startswith, endswith, isnull,
            notnull. Filters are AND-ed and run in DuckDB (in the database for
            ``sql.connection`` reads of ``table=``). Kinds with read options
            take them here too: ``sql.connection`` reads ``sql=`` with
            ``params=``, or ``table=``, optionally in ``chunksize=`` rows (an
            iterator of DataFrames); it and ``url.dataset`` fill
            ``{placeholders}`` from ``secrets=`` (a dict), then ``om.secrets``.

        Examples
        --------
        >>> import pandas as pd, omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.datasets.put(pd.DataFrame({'sales': [10, 200], 'x': [1, 2]}), 'stats')
        >>> om.datasets.get('stats', sales__gte=100)
           sales  x
        1    200  2
        >>> list(om.datasets.get('stats[^sales]').columns)
        ['x']
        """
        ref, rev, chosen = self._resolved(name, columns, revision)
        plugin = self.plugins.get(rev.kind)
        options, fill = self._read_options(plugin, kwfilters)
        query = ReadQuery(
            columns=chosen,
            exclude=ref.exclude,
            filters={**(filters or {}), **kwfilters},
            options=options,
            fill=fill,
        )
        parts = self.catalog.parts(rev)
        with self._reading(ref.name, rev, parts):
            if not plugin.caches_reads:
                return plugin.get(self.blobs, parts, rev.kind_meta, query=query)
            if query.filters:
                table = plugin.read_table(self.blobs, parts, rev.kind_meta, query=query)
            else:
                key = (
                    self.catalog.url,
                    self.bucket,
                    self.store,
                    rev.revision,
                    None if query.columns is None else tuple(query.columns),
                    query.exclude,
                )
                # A new object on every read: built from the kept (immutable) table,
                # or a copy that shares nothing mutable (see omops.readcache).
                return self.reads.get(
                    key,
                    lambda: plugin.read_table(self.blobs, parts, rev.kind_meta, query=query),
                    small=rev.size <= self.reads.max_blob_bytes,
                    build=lambda table: plugin.from_table(table, rev.kind_meta),
                    copy=plugin.safe_copy,
                )
            return plugin.from_table(table, rev.kind_meta)

    def getl(
        self,
        name: str,
        /,
        *,
        columns: Sequence[str] | None = None,
        revision: str | None = None,
        filters: Mapping[str, Any] | None = None,
        **kwfilters: Any,
    ) -> LazyFrame:
        """``name`` as a :class:`~omops.lazy.LazyFrame`: computed in DuckDB, read when asked for.

        Takes what :meth:`get` takes (``name@tag[a,b]``, ``columns=``,
        ``revision=``, filters); nothing is read until a result is asked for,
        so the dataset may be far larger than memory. The revision is the
        one that is latest (or named) now: later puts do not change the frame.

        URL datasets (``url.dataset``) are scanned where they are by every
        query; SQL connections (``sql.connection``) take ``table=`` or
        ``sql=`` with ``params=`` (and ``secrets=``), as :meth:`get` does,
        and the database runs the statement again for each query.

        Examples
        --------
        >>> import pandas as pd, omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.datasets.put(pd.DataFrame({'g': ['a', 'b', 'a'], 'x': [1, 2, 3]}), 'xs')
        >>> om.datasets.getl('xs', x__gte=2).groupby('g').agg(n=('x', 'count')).value
           n
        g
        a  1
        b  1
        """
        ref, rev, chosen = self._resolved(name, columns, revision)
        plugin = self.plugins.get(rev.kind)
        if rev.kind in EXTERNAL_KINDS:
            source = self._external_source(plugin, rev, kwfilters, filters or {})
        else:
            source = plugin.lazy_source(self.blobs, self.catalog.parts(rev), rev.kind_meta)
        from omops.lazy import LazyFrame  # pyarrow, loaded when a lazy frame is made

        frame = LazyFrame.from_source(source, engine=self.lazy, repository=self)
        if chosen is not None:
            frame = frame[list(select_columns(frame.columns, chosen, exclude=ref.exclude) or [])]
        frame = frame.query({**(filters or {}), **kwfilters})
        return frame[frame.columns[0]] if rev.kind == "pandas.series" else frame

    def stream(
        self,
        name: str,
        /,
        *,
        columns: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        offset: int = 0,
        limit: int | None = None,
        batch_rows: int = 65_536,
        **options: Any,
    ) -> TableStream:
        """Read a DataFrame or Series ``name`` as Arrow record batches, a window at a time.

        For results too large to hold at once (the REST server streams them):
        filters, columns (as for :meth:`get`) and rows ``offset`` to ``offset +
        limit`` of the filtered result are applied while reading, so rows
        outside the window are never loaded, and about one batch of
        ``batch_rows`` (plus a Parquet row group) is in memory at a time.
        Errors in the name, filters or columns, and missing blobs, are raised
        here; a blob found damaged while reading raises StorageError from the
        iteration. Returns a :class:`~omops.plugins.TableStream` (``schema``,
        ``data_columns``, ``batches``, ``count()``, ``close()``). Kinds read
        elsewhere take their read options (``table=``, ``sql=`` and
        ``secrets=`` of ``sql.connection``) as for :meth:`get`.

        Examples
        --------
        >>> import pandas as pd, omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.datasets.put(pd.DataFrame({'x': range(10)}), 'xs')
        >>> rows = om.datasets.stream('xs', offset=2, limit=5, batch_rows=2)
        >>> rows.count(), [b.num_rows for b in rows.batches]
        (5, [2, 2, 1])
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidQuery(f"offset and limit must be >= 0, got {offset} and {limit}")
        ref = parse_reference(name)
        if columns is not None and ref.columns is not None:
            raise InvalidQuery(f"{name!r} selects columns already; drop columns=")
        rev = self.catalog.lookup(self.bucket, self.store, check_name(ref.name), ref.ref)
        plugin = self.plugins.get(rev.kind)
        if not plugin.tabular:
            raise InvalidQuery(f"{ref.name!r} is a {rev.kind}, not a table; read it whole")
        read_options, fill = self._read_options(plugin, options)
        if options:
            raise InvalidQuery(
                f"stream() got unknown option(s) {sorted(options)}; pass filters as filters="
            )
        query = ReadQuery(
            columns=ref.columns if ref.columns is not None else columns,
            exclude=ref.exclude,
            filters=dict(filters or {}),
            offset=offset,
            limit=limit,
            options=read_options,
            fill=fill,
        )
        parts = self.catalog.parts(rev)
        with self._reading(ref.name, rev, parts):
            if self._missing([p.blob for p in parts]):  # before a 200 goes out
                raise FileNotFoundError(ref.name)
            found = plugin.stream(
                self.blobs, parts, rev.kind_meta, query=query, batch_rows=batch_rows
            )
        return guarded(found, lambda: self._reading(ref.name, rev, parts))

    def _external_source(
        self,
        plugin: Any,
        rev: RevisionRecord,
        given: dict[str, Any],
        filters: Mapping[str, Any],
    ) -> ExternalSource:
        """A lazy frame's source over a URL or SQL dataset; its read options taken from ``given``.

        The filters given to ``getl`` of a SQL ``table=`` read also go into the
        database's WHERE (bound parameters), as for ``get``, so only matching
        rows leave the database; the lazy frame applies them again in DuckDB
        (the same rows). Filters added later with ``query()`` run in DuckDB.
        """
        options, fill = self._read_options(plugin, given)
        if options.get("chunksize") is not None:
            raise InvalidQuery(
                "getl reads lazily already; drop chunksize= and read chunks with .iterchunks(size)"
            )
        options.pop("chunksize", None)
        pushed = {**filters, **given} if options.get("table") is not None else {}
        query = ReadQuery(options=options, fill=fill, filters=pushed)
        from omops.lazy import ExternalSource

        return ExternalSource(lambda: plugin.arrow(rev.kind_meta, query))

    def _read_options(self, plugin: Any, given: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The kind's read options taken out of ``given`` (``secrets`` as the fill function)."""
        options = {k: given.pop(k) for k in list(given) if k in plugin.read_options}
        return options, self._filler(options.pop("secrets", None))

    def _resolved(
        self, name: str, columns: Sequence[str] | None, revision: str | None
    ) -> tuple[Reference, RevisionRecord, Sequence[str] | None]:
        """The reference, its revision, and the columns asked for (by name or ``columns=``)."""
        ref = parse_reference(name)
        if revision is not None:
            check_ref(revision)
        if revision is not None and ref.ref is not None:
            raise InvalidName(f"{name!r} names a revision already; drop revision={revision!r}")
        if columns is not None and ref.columns is not None:
            raise InvalidQuery(f"{name!r} selects columns already; drop columns=")
        rev = self.catalog.lookup(
            self.bucket, self.store, check_name(ref.name), revision or ref.ref
        )
        return ref, rev, ref.columns if ref.columns is not None else columns

    @contextmanager
    def _reading(self, name: str, rev: RevisionRecord, parts: Sequence[Any]) -> Iterator[None]:
        """A block whose read errors become StorageError or PluginError naming ``name``,
        or NotFound when a concurrent drop removed the revision while it was read."""
        what = f"{self.store} {name!r} (revision {rev.revision[:12]}, kind {rev.kind})"
        try:
            with reading(self.blobs, what, name, [p.blob for p in parts]):
                yield
        except (StorageError, PluginError):
            # A drop deletes the blobs after the revision; a put of the same bytes may
            # have written them again since, so the blobs say nothing: the catalog does.
            self.catalog.parts(rev)  # NotFound: "revision ... was dropped meanwhile"
            raise

    def exists(self, name: str) -> bool:
        """Whether ``name`` (or ``name@ref``) exists."""
        ref = parse_reference(name)
        record = self.catalog.find(self.bucket, self.store, ref.name)
        if record is None or ref.ref is None:
            return record is not None
        try:
            self.catalog.resolve(record.id, ref.ref)
        except NotFound:
            return False
        return True

    def list(
        self, pattern: str | None = None, *, kind: str | None = None, hidden: bool = False
    ) -> list[str]:
        """Names in this store, sorted; ``pattern`` is a glob like ``'prod/*'``.

        Names whose first segment starts with ``_`` (``_temp/...`` inputs of
        tasks, ``_experiments/...`` artifacts) are omops' own and left out
        unless ``hidden=True``, even when ``pattern`` matches them; ``get``,
        ``exists`` and ``metadata`` read them as any other name.

        Examples
        --------
        >>> import omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.datasets.put([1], 'x'); _ = om.datasets.put([2], '_temp/y')
        >>> om.datasets.list(), om.datasets.list(hidden=True)
        (['x'], ['_temp/y', 'x'])
        """
        records = self.catalog.list(
            self.bucket, self.store, pattern=pattern, kind=kind, hidden=hidden
        )
        return [r.name for r in records]

    def metadata(self, name: str) -> Metadata:
        """Metadata of ``name`` at its latest (or given, ``name@ref``) revision."""
        ref = parse_reference(name)
        record = self._record(ref.name)
        revision = self.catalog.resolve(record.id, ref.ref)
        return self._metadata(record, revision, self.catalog.tags_of(revision))

    def revisions(self, name: str) -> list[tuple[str, list[str]]]:
        """``[(revision, [tags]), ...]``, oldest first.

        Examples
        --------
        >>> import omops, tempfile
        >>> om = omops.Omega(home=tempfile.mkdtemp())
        >>> _ = om.datasets.put([1], 'x'); _ = om.datasets.put([2], 'x', tag='testing')
        >>> [tags for _, tags in om.datasets.revisions('x')]
        [[], ['latest', 'testing']]
        """
        record = self._record(parse_reference(name).name)
        return [(rev.revision, tags) for rev, tags in self.catalog.revisions(record.id)]

    # -- helpers -----------------------------------------------------------

    def _record(self, name: str) -> ObjectRecord:
        return self.catalog.get(self.bucket, self.store, check_name(name))

    def _metadata(
        self, record: ObjectRecord, revision: RevisionRecord, tags: list[str]
    ) -> Metadata:
        try:
            details = self.plugins.get(revision.kind).describe(revision.kind_meta)
        except PluginError:
            details = {}
        return Metadata(
            name=record.name,
            bucket=record.bucket,
            store=record.store,
            kind=revision.kind,
            revision=revision.revision,
            tags=sorted(set(tags)),
            created=record.created,
            modified=record.modified,
            attributes=dict(record.attributes),
            size=revision.size,
            rows=revision.rows,
            columns=details.get("columns"),
            origin=record.origin,
            kind_meta=dict(revision.kind_meta),
            details=details,
            _repository=self,
        )
