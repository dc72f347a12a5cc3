"""The repository: one store of named, revisioned objects.

``om.datasets``, ``om.models``, ``om.jobs``, ``om.scripts`` and ``om.streams``
are all :class:`Repository` instances with the same verbs. A repository knows
names, buckets and revisions; the bytes are the plugins' business.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omops.blobs import Blobs
from omops.catalog import Catalog, MissingBlobs, NewRevision, ObjectRecord, RevisionRecord
from omops.errors import ConfigError, InvalidData, InvalidName, InvalidQuery, NotFound, PluginError
from omops.names import check_name, check_tag, parse_reference
from omops.plugins import ReadQuery, Registry, default_registry

__all__ = ["STORES", "Metadata", "ReadCache", "Repository"]

#: Writes of one put when concurrent drops keep deleting its blobs (see Catalog.delete_unused).
_PUT_ATTEMPTS = 5


class ReadCache:
    """Small objects read before, by revision; each hit is a fresh deep copy.

    A revision never changes, so a process that reads the same small dataset
    again and again (a worker predicting on it, a notebook loop) reads its
    blob once. The name is still looked up on every read, so a new revision
    is seen at once. Only kinds whose plugin ``caches_reads`` (DataFrames and
    Series), reads without filters, blobs up to ``max_blob_bytes`` and
    objects up to ``max_object_bytes`` in memory are kept, ``max_bytes`` in
    all (least recently used first out).
    """

    def __init__(
        self,
        max_bytes: int | None = 64 * 2**20,
        max_object_bytes: int = 4 * 2**20,
        max_blob_bytes: int = 2**20,
    ) -> None:
        # None: read OMOPS_READ_CACHE_MB when first needed (import reads nothing).
        self._max_bytes, self.max_object_bytes = max_bytes, max_object_bytes
        self.max_blob_bytes = max_blob_bytes
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            self._max_bytes = _read_cache_bytes()
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = value

    def get(self, key: tuple[Any, ...], read: Callable[[], Any], *, small: bool) -> Any:
        """A copy of the kept object, or ``read()`` (kept when ``small``)."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
        if found is not None:
            return found[0].copy(deep=True)
        obj = read()
        if small:
            self._keep(key, obj)
        return obj

    def _keep(self, key: tuple[Any, ...], obj: Any) -> None:
        size = obj.memory_usage(deep=True)
        size = int(size.sum() if hasattr(size, "sum") else size)
        if size > min(self.max_object_bytes, self.max_bytes):
            return
        kept = obj.copy(deep=True)  # the caller may change the object it got
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (kept, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _read_cache_bytes() -> int:
    text = os.environ.get("OMOPS_READ_CACHE_MB", "64")
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        raise ConfigError(
            f"OMOPS_READ_CACHE_MB must be a number of MiB >= 0 (0: off), not {text!r}"
        )
    return int(megabytes * 2**20)


#: The repositories every Omega instance has.
STORES: tuple[str, ...] = ("datasets", "models", "jobs", "scripts", "streams")


@dataclass
class Metadata:
    """What the catalog knows about one object (at one revision).

    ``attributes`` is yours to edit; :meth:`save` persists it.

    Attributes
    ----------
    name, bucket, store, kind : str
    revision : str
        Id of the revision this metadata describes.
    tags : list of str
        Tags on that revision.
    created, modified : datetime
        When the object was first stored and last changed (UTC).
    attributes : dict
        User attributes.
    size : int
        Bytes in the blob store for this revision.
    rows : int or None
        Rows, for DataFrames and Series.
    columns : list of str or None
        Columns, for DataFrames and Series.
    origin : dict or None
        Where a promoted object came from.
    kind_meta : dict
        What the plugin recorded to read the object back.
    """

    name: str
    bucket: str
    store: str
    kind: str
    revision: str
    tags: list[str]
    created: dt.datetime
    modified: dt.datetime
    attributes: dict[str, Any]
    size: int
    rows: int | None
    columns: list[str] | None
    origin: dict[str, Any] | None
    kind_meta: dict[str, Any] = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    _repository: Repository | None = field(default=None, repr=False, compare=False)

    def save(self) -> Metadata:
        """Persist edited ``attributes``."""
        if self._repository is None:
            raise InvalidData("this Metadata is not bound to a repository")
        self._repository.set_attributes(self.name, self.attributes)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (datetimes as ISO strings), without the plugin's kind_meta."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "store": self.store,
            "kind": self.kind,
            "revision": self.revision,
            "tags": list(self.tags),
            "created": self.created.isoformat(),
            "modified": self.modified.isoformat(),
            "attributes": dict(self.attributes),
            "size": self.size,
            "rows": self.rows,
            "columns": self.columns,
            "origin": self.origin,
            **self.details,
        }


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
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.blobs = blobs
        self.bucket = bucket
        self.plugins = plugins or default_registry()
        self.reads = reads if reads is not None else ReadCache(None)

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
        if append and not plugin.appendable:
            raise InvalidData(f"kind {plugin.kind!r} cannot be appended to; put with append=False")
        append = plugin.appendable if append is None else append
        base = self._append_base(name, plugin.kind) if append else None
        for attempt in range(_PUT_ATTEMPTS):
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
        """Point ``tag`` at ``revision`` (a revision id prefix or another tag)."""
        check_tag(tag)
        check_tag(revision)
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
            notnull. Filters are AND-ed and run in DuckDB.

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
        ref = parse_reference(name)
        if revision is not None:
            check_tag(revision)
        if revision is not None and ref.ref is not None:
            raise InvalidName(f"{name!r} names a revision already; drop revision={revision!r}")
        if columns is not None and ref.columns is not None:
            raise InvalidQuery(f"{name!r} selects columns already; drop columns=")
        rev = self.catalog.lookup(
            self.bucket, self.store, check_name(ref.name), revision or ref.ref
        )
        query = ReadQuery(
            columns=ref.columns if ref.columns is not None else columns,
            exclude=ref.exclude,
            filters={**(filters or {}), **kwfilters},
        )
        plugin = self.plugins.get(rev.kind)
        if not plugin.caches_reads or query.filters:
            return plugin.get(self.blobs, self.catalog.parts(rev), rev.kind_meta, query=query)
        key = (
            self.catalog.url,
            self.bucket,
            self.store,
            rev.revision,
            None if query.columns is None else tuple(query.columns),
            query.exclude,
        )
        return self.reads.get(
            key,
            lambda: plugin.get(self.blobs, self.catalog.parts(rev), rev.kind_meta, query=query),
            small=rev.size <= self.reads.max_blob_bytes,
        )

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
