"""``Omega``: one configuration (catalog, blobs, broker, bucket) and its repositories."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omops._context import Context
from omops.blobs import Blobs
from omops.catalog import Catalog
from omops.config import Settings, load_settings
from omops.errors import InvalidData, InvalidName
from omops.jobs import JobsRepository
from omops.lazy import Engine
from omops.plugins import Registry, default_registry
from omops.repository import STORES, Repository
from omops.secrets import Secrets
from omops.streams import StreamsRepository

__all__ = ["Omega"]

#: The repositories with verbs of their own; the others are plain Repository objects.
_REPOSITORIES: Mapping[str, type[Repository]] = MappingProxyType(
    {"jobs": JobsRepository, "streams": StreamsRepository}
)
#: Blob keys checked against the catalog per query when sweeping.
_SWEEP_CHUNK = 500
_BUCKET = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _check_bucket(bucket: object) -> str:
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or bucket in (".", ".."):
        raise InvalidName(f"invalid bucket {bucket!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return bucket


def _home_environ(home: str | Path) -> dict[str, str]:
    """The settings' environment of ``Omega(home=...)``: the folder, and the process's
    key of ``om.secrets`` (a secret of the process, not a place)."""
    environ = {"OMOPS_HOME": str(home)}
    if os.environ.get("OMOPS_SECRET_KEY"):
        environ["OMOPS_SECRET_KEY"] = os.environ["OMOPS_SECRET_KEY"]
    return environ


def _blobs(url: str | None, settings: Settings) -> Blobs:
    """The blob store at ``url`` (the configured one by default), with the configured
    storage options when it is of the same kind (protocol) as the configured store."""
    import fsspec

    url = url or settings.blobs
    options = settings.blobs_options
    if options and url != settings.blobs:
        same = fsspec.utils.get_protocol(url) == fsspec.utils.get_protocol(settings.blobs)
        options = options if same else {}
    return Blobs(url, **options)


class Omega:
    """An omops instance: the repositories of one catalog, blob store and bucket.

    Parameters
    ----------
    catalog : str or Catalog, optional
        Catalog URL or instance; defaults to the configured one.
    blobs : str or Blobs, optional
        Blob store URL or instance; defaults to the configured one. A URL of
        the configured store's kind (``s3://`` ...) is opened with the
        configured ``blobs_options`` (see :mod:`omops.config`).
    broker : str, optional
        Celery broker URL; ``None`` runs tasks locally.
    bucket : str, optional
        Bucket (namespace) for all repositories; defaults to ``'default'``.
    home : str or Path, optional
        Use the embedded defaults under this folder instead of ``OMOPS_HOME``
        (of the environment only ``OMOPS_SECRET_KEY`` is read then).
    settings : Settings, optional
        A resolved configuration; by default :func:`omops.config.load_settings`.
    plugins : Registry, optional
        The plugins by kind; by default the built-in kinds and entry points.
    context : Context, optional
        State to share (bucket views pass their parent's); a new one by default.

    Notes
    -----
    An Omega owns its state: loaded models, cached reads, event writers and
    executors hang off its :class:`~omops._context.Context`, shared with its
    bucket views ``om['dev']`` and with nobody else. :meth:`close` releases it.

    Examples
    --------
    >>> import omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> om['dev'].bucket
    'dev'
    """

    def __init__(
        self,
        catalog: str | Catalog | None = None,
        blobs: str | Blobs | None = None,
        broker: str | None = None,
        bucket: str | None = None,
        *,
        home: str | Path | None = None,
        settings: Settings | None = None,
        plugins: Registry | None = None,
        context: Context | None = None,
    ) -> None:
        if settings is None:
            settings = load_settings(_home_environ(home) if home is not None else None)
        self.settings = settings
        self.catalog = (
            catalog if isinstance(catalog, Catalog) else Catalog(catalog or settings.catalog)
        )
        self.blobs = blobs if isinstance(blobs, Blobs) else _blobs(blobs, settings)
        self.broker = broker if broker is not None else settings.broker
        self.bucket = _check_bucket(bucket or settings.bucket)
        self.plugins = plugins or default_registry()
        self.context = context if context is not None else Context()
        self.secrets = Secrets(self.catalog, self.bucket, key=settings.secret_key)
        for store in STORES:
            setattr(
                self,
                store,
                _REPOSITORIES.get(store, Repository)(
                    store,
                    catalog=self.catalog,
                    blobs=self.blobs,
                    bucket=self.bucket,
                    plugins=self.plugins,
                    reads=self.context.reads,
                    secrets=self.secrets,
                    lazy=self.context.part("lazy", lambda: Engine.from_settings(settings)),
                ),
            )

    datasets: Repository
    models: Repository
    jobs: JobsRepository
    scripts: Repository
    streams: StreamsRepository
    #: ``om.secrets``: values for ``{placeholders}`` in connection strings, encrypted.
    secrets: Secrets

    def __repr__(self) -> str:
        return f"Omega(catalog={self.catalog!r}, blobs={self.blobs!r}, bucket={self.bucket!r})"

    @property
    def runtime(self):  # noqa: ANN201 - omops.runtime.Runtime, imported lazily
        """``om.runtime``: run model actions here or on Celery workers.

        The runtime layer sits below this one; it is imported on first use so
        that storing and reading never load it.
        """
        from omops.runtime import Runtime

        return Runtime(self)

    def sweep(self, *, older_than: float = 24 * 3600, dry_run: bool = False) -> dict[str, Any]:
        """Remove what crashed or killed writers left in the blob store.

        Two kinds of leftovers, each only when not modified for ``older_than``
        seconds:

        * files under ``tmp/``: a put killed while writing;
        * blobs no revision refers to: a put killed after writing its blob but
          before its catalog commit. They are deleted under the catalog's blob
          lock, so a put committing the same blob at that moment either keeps
          it or writes it again.

        Age alone does not protect a write in progress: on a local blob store
        a writer locks its temporary file (``flock``) until it is in place, and
        a put its blobs until its commit, and the sweep skips what is locked,
        so even ``older_than=0`` never removes a live writer's file. Other
        fsspec filesystems (``s3://`` ...) have no such locks: there only
        ``older_than`` protects writes, so keep it well above the longest put.

        The blob store must belong to this catalog alone (the default: each
        ``OMOPS_HOME`` has its own); blobs of another catalog sharing the
        folder would look unused. Buckets share the store and are all covered.

        Returns ``{"temporaries": n, "orphans": n, "bytes": n, "held": n,
        "dry_run": bool}``: what was (or, with ``dry_run``, would be) removed,
        and how many old enough files were kept because a live writer holds them.

        Examples
        --------
        >>> import omops, tempfile
        >>> omops.Omega(home=tempfile.mkdtemp()).sweep()
        {'temporaries': 0, 'orphans': 0, 'bytes': 0, 'held': 0, 'dry_run': False}
        """
        if not older_than >= 0:
            raise InvalidData(f"older_than must be >= 0 seconds, got {older_than}")
        stored = dict(self.blobs.stored(older_than))
        keys = sorted(stored)
        orphans: list[str] = []
        held = 0
        for start in range(0, len(keys), _SWEEP_CHUNK):  # bounded IN (...) lists
            chunk = keys[start : start + _SWEEP_CHUNK]
            unused = sorted(set(chunk) - self.catalog.blobs_in_use(chunk))
            free = [key for key in unused if not self.blobs.in_use(self.blobs.path(key))]
            held += len(unused) - len(free)
            if free and not dry_run:
                free = self._delete_orphans(free)
            orphans += free
        temporaries = []
        for path, size in self.blobs.temporaries(older_than):
            if self.blobs.in_use(path):
                held += 1  # a live writer's (remove() would refuse it too, under the lock)
            elif dry_run or self.blobs.remove(path):
                temporaries.append((path, size))
        size = sum(n for _, n in temporaries) + sum(stored[key] for key in orphans)
        return {
            "temporaries": len(temporaries),
            "orphans": len(orphans),
            "bytes": size,
            "held": held,
            "dry_run": dry_run,
        }

    def _delete_orphans(self, keys: list[str]) -> list[str]:
        """Delete those of ``keys`` still unused and not held by a put; return them."""
        deleted: list[str] = []

        def delete(key: str) -> None:
            if self.blobs.delete_unheld(key):
                deleted.append(key)

        self.catalog.delete_unused(keys, delete)
        return deleted

    def __getitem__(self, bucket: str) -> Omega:
        """The same instance family in another bucket: ``om['dev']``."""
        return Omega(
            self.catalog,
            self.blobs,
            self.broker,
            _check_bucket(bucket),
            settings=self.settings,
            plugins=self.plugins,
            context=self.context,
        )

    def close(self) -> None:
        """Release what this Omega (and its bucket views) hold.

        Stops its executors' worker pools, writes queued tracking events,
        empties its caches and closes the catalog's connections.
        """
        self.context.close()
        self.catalog.close()

    def __enter__(self) -> Omega:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
