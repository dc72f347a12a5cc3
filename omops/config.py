"""Settings and their precedence.

Each setting is read, first hit wins, from

1. the environment (``OMOPS_HOME``, ``OMOPS_CATALOG``, ``OMOPS_BLOBS``,
   ``OMOPS_BROKER``, ``OMOPS_BUCKET``, ``OMOPS_LABEL``),
2. ``$OMOPS_HOME/config.toml`` (keys ``catalog``, ``blobs``, ``broker``,
   ``bucket``, ``label``),
3. the embedded defaults: a SQLite catalog and a blob folder under
   ``OMOPS_HOME`` (``~/.omops``), no broker (local executor).

Nothing is read at import time; :func:`load_settings` does the reading.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from omops.errors import ConfigError

__all__ = ["Settings", "load_settings", "mask_url"]

_KEYS = ("catalog", "blobs", "broker", "bucket", "label")
_USERINFO = re.compile(r"(://[^:/@]*:)[^@]*@")
_SECRET_PARAM = re.compile(r"pass(word|wd)?|pwd|secret|token|sig|credential", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """One resolved configuration.

    Parameters
    ----------
    home : Path
        Folder for the embedded defaults and ``config.toml``.
    catalog : str
        SQLAlchemy URL of the catalog database.
    blobs : str
        fsspec URL (or local path) of the blob store.
    broker : str or None
        Celery broker URL; ``None`` selects the local executor.
    bucket : str
        Bucket used when none is named.
    label : str
        Queue that tasks go to unless ``om.runtime.require(...)`` names another,
        and that ``om runtime worker`` consumes unless ``--label`` is given.
    sources : dict
        For each setting, where its value came from (``env``, ``file``,
        ``default``); shown by ``om config show``.
    """

    home: Path
    catalog: str
    blobs: str
    broker: str | None
    bucket: str = "default"
    label: str = "default"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, object]:
        """Settings as plain JSON-able values."""
        values = asdict(self)
        values["home"] = str(self.home)
        values["sources"] = dict(self.sources)
        return values


def _read_config_file(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}. Fix or remove the file.") from exc
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}; valid keys are {list(_KEYS)}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"{key!r} in {path} must be a string, got {type(value).__name__}")
    return data


def _defaults(home: Path) -> dict[str, str | None]:
    return {
        "catalog": f"sqlite:///{home / 'catalog.sqlite'}",
        "blobs": str(home / "blobs"),
        "broker": None,
        "bucket": "default",
        "label": "default",
    }


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from the environment, the config file and defaults.

    Parameters
    ----------
    environ : mapping, default=os.environ
        Where to read ``OMOPS_*`` variables from.

    Returns
    -------
    Settings
    """
    env = os.environ if environ is None else environ
    home = Path(env.get("OMOPS_HOME") or Path.home() / ".omops").expanduser()
    from_file = _read_config_file(home / "config.toml")
    defaults = _defaults(home)
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {"home": "env" if env.get("OMOPS_HOME") else "default"}
    for key in _KEYS:
        env_value = env.get(f"OMOPS_{key.upper()}")
        if env_value:
            values[key], sources[key] = env_value, "env"
        elif key in from_file:
            values[key], sources[key] = str(from_file[key]), "file"
        else:
            values[key], sources[key] = defaults[key], "default"
    return Settings(
        home=home,
        catalog=str(values["catalog"]),
        blobs=str(values["blobs"]),
        broker=values["broker"],
        bucket=str(values["bucket"]),
        label=str(values["label"]),
        sources=sources,
    )


def mask_url(url: str | None) -> str | None:
    """Hide the password in a URL's user info and secret-looking query parameters.

    Examples
    --------
    >>> mask_url('postgresql://ana:s3cret@db:5432/omops')
    'postgresql://ana:***@db:5432/omops'
    >>> mask_url('s3://bucket/path?secret=abc&region=eu')
    's3://bucket/path?secret=***&region=eu'
    >>> mask_url('sqlite:////home/ana/.omops/catalog.sqlite')
    'sqlite:////home/ana/.omops/catalog.sqlite'
    """
    if not url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken IPv6 host: mask anything that looks like user:password@
        return _USERINFO.sub(r"\1***@", url)
    masked = url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        masked = masked.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:***@{hostport}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(_SECRET_PARAM.search(key) for key, _ in pairs):
        hidden = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs]
        masked = masked.replace(f"?{parts.query}", f"?{urlencode(hidden, safe='*')}", 1)
    return _USERINFO.sub(r"\1***@", masked)  # also a password with an unescaped '/' in it
