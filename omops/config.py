"""Settings and their precedence.

Each setting is read, first hit wins, from

1. the environment (``OMOPS_HOME``, ``OMOPS_CATALOG``, ``OMOPS_BLOBS``,
   ``OMOPS_BROKER``, ``OMOPS_BUCKET``, ``OMOPS_LABEL``, ``OMOPS_MEMORY_LIMIT``,
   ``OMOPS_SPILL``, ``OMOPS_BLOBS_OPTIONS``, ``OMOPS_SECRET_KEY``, ``OMOPS_MONITOR_WEBHOOK``),
2. ``$OMOPS_HOME/config.toml`` (keys ``catalog``, ``blobs``, ``broker``,
   ``bucket``, ``label``, ``memory_limit``, ``spill``, ``secret_key``,
   ``monitor_webhook``, and a
   ``[blobs_options]`` table),
3. the embedded defaults: a SQLite catalog and a blob folder under
   ``OMOPS_HOME`` (``~/.omops``), no broker (local executor).

``blobs_options`` are the fsspec storage options of the blob store (for
``s3://``: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs`` ...); in the
environment, ``OMOPS_BLOBS_OPTIONS`` holds them as one JSON object. Object
stores also read their own standard variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``; ``GOOGLE_APPLICATION_CREDENTIALS``;
``AZURE_STORAGE_CONNECTION_STRING`` ...), so often no options are needed.
``memory_limit`` (``'4GB'``, ``'512MiB'``) bounds what DuckDB holds for lazy
frames (``om.datasets.getl``) before it spills to the ``spill`` folder.
Secret-looking options are masked wherever settings are shown
(:func:`mask_options`). ``secret_key`` encrypts :mod:`omops.secrets` (one or
more Fernet keys, comma-separated, the first encrypts); it is never shown.

Nothing is read at import time; :func:`load_settings` does the reading.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from omops.errors import ConfigError

__all__ = ["Settings", "check_memory", "load_settings", "mask_options", "mask_url", "mask_webhook"]

_KEYS = (
    "catalog",
    "blobs",
    "broker",
    "bucket",
    "label",
    "memory_limit",
    "spill",
    "secret_key",
    "monitor_webhook",
)
_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.IGNORECASE)
_TABLES = ("blobs_options",)
_USERINFO = re.compile(r"(://[^:/@]*:)[^@]*@")
_SECRET_PARAM = re.compile(r"pass(word|wd)?|pwd|secret|token|sig|credential", re.IGNORECASE)
#: Storage options whose values are secrets (besides what _SECRET_PARAM matches).
_SECRET_OPTION = re.compile(
    r"^(key|account_key|access_key|connection_string|sas|token|session_token)$|key_id$"
    r"|secret|pass(word|wd)?|credential|token",
    re.IGNORECASE,
)


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
    monitor_webhook : str or None
        URL that monitoring alerts are POSTed to for tracked models that have
        no webhook of their own (:mod:`omops.monitoring.alerts`). Shown as
        scheme and host only: its path is often a token.
    memory_limit : str or None
        Memory DuckDB may hold for lazy frames before it spills to disk, like
        ``'4GB'`` or ``'512MiB'``; ``None``: DuckDB's default (80% of RAM).
    spill : str
        Folder DuckDB spills to when a lazy frame needs more than ``memory_limit``.
    blobs_options : dict
        fsspec storage options of the blob store (endpoint, credentials ...).
        Never shown unmasked: see :func:`mask_options`.
    secret_key : str or None
        The key(s) :mod:`omops.secrets` encrypts with; never shown.
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
    monitor_webhook: str | None = None
    memory_limit: str | None = None
    spill: str = ""
    blobs_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        # Passwords in URLs and secret options never reach a log through repr.
        return (
            f"Settings(home={str(self.home)!r}, catalog={mask_url(self.catalog)!r}, "
            f"blobs={mask_url(self.blobs)!r}, broker={mask_url(self.broker)!r}, "
            f"bucket={self.bucket!r}, label={self.label!r}, "
            f"monitor_webhook={mask_webhook(self.monitor_webhook)!r}, "
            f"memory_limit={self.memory_limit!r}, spill={self.spill!r}, "
            f"blobs_options={mask_options(self.blobs_options)!r})"
        )

    def as_dict(self) -> dict[str, object]:
        """Settings as plain JSON-able values (secrets included: never print this)."""
        values = asdict(self)
        values["home"] = str(self.home)
        values["blobs_options"] = dict(self.blobs_options)
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
    unknown = sorted(set(data) - set(_KEYS) - set(_TABLES))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {path}; valid keys are {list(_KEYS + _TABLES)}"
        )
    for key, value in data.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{key!r} in {path} must be a table ([{key}] with key = value lines), "
                    f"got {type(value).__name__}"
                )
        elif not isinstance(value, str):
            raise ConfigError(f"{key!r} in {path} must be a string, got {type(value).__name__}")
    return data


def _options_from_env(text: str) -> dict[str, Any]:
    """``OMOPS_BLOBS_OPTIONS``: one JSON object (its values are never echoed: secrets)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"OMOPS_BLOBS_OPTIONS is not valid JSON ({exc.__class__.__name__} at "
            f"character {getattr(exc, 'pos', '?')}); set it to a JSON object such as "
            '{"endpoint_url": "https://s3.example.com"}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"OMOPS_BLOBS_OPTIONS must be a JSON object, got a JSON {type(value).__name__}; "
            'e.g. {"endpoint_url": "https://s3.example.com"}'
        )
    return value


def _defaults(home: Path) -> dict[str, str | None]:
    return {
        "catalog": f"sqlite:///{home / 'catalog.sqlite'}",
        "blobs": str(home / "blobs"),
        "broker": None,
        "bucket": "default",
        "label": "default",
        "memory_limit": None,
        "spill": str(home / "spill"),
        "secret_key": None,
        "monitor_webhook": None,
    }


def check_memory(text: str, *, source: str = "OMOPS_MEMORY_LIMIT") -> str:
    """``text`` if it is an amount of memory DuckDB reads (``'4GB'``, ``'512 MiB'``), normalised.

    Examples
    --------
    >>> check_memory('4gb')
    '4GB'
    >>> check_memory('lots')
    Traceback (most recent call last):
    ...
    omops.errors.ConfigError: OMOPS_MEMORY_LIMIT='lots' is not an amount of memory; give a number and a unit, e.g. 4GB or 512MiB
    """
    found = _MEMORY.fullmatch(text)
    if found is None:
        raise ConfigError(
            f"{source}={text!r} is not an amount of memory; give a number and a unit, "
            "e.g. 4GB or 512MiB"
        )
    number, unit = found.groups()
    unit = unit.upper().replace("I", "i")
    return f"{number}{unit}"


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
    options: dict[str, Any] = {}
    sources["blobs_options"] = "default"
    if env.get("OMOPS_BLOBS_OPTIONS", "").strip():
        options, sources["blobs_options"] = _options_from_env(env["OMOPS_BLOBS_OPTIONS"]), "env"
    elif "blobs_options" in from_file:
        options, sources["blobs_options"] = dict(from_file["blobs_options"]), "file"  # type: ignore[arg-type]
    memory = values["memory_limit"]
    if memory is not None:
        where = "OMOPS_MEMORY_LIMIT" if sources["memory_limit"] == "env" else "memory_limit"
        memory = check_memory(memory, source=where)
    return Settings(
        home=home,
        catalog=str(values["catalog"]),
        blobs=str(values["blobs"]),
        broker=values["broker"],
        bucket=str(values["bucket"]),
        label=str(values["label"]),
        monitor_webhook=values["monitor_webhook"],
        memory_limit=memory,
        spill=str(values["spill"]),
        blobs_options=options,
        secret_key=values["secret_key"],
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


def mask_webhook(url: object) -> str | None:
    """A webhook URL as scheme and host: its path and query often hold its secret token.

    Examples
    --------
    >>> mask_webhook('https://hooks.example.com/services/T0/B0/s3cret')
    'https://hooks.example.com/***'
    >>> mask_webhook(None) is None
    True
    """
    if not url:
        return None
    if not isinstance(url, str):
        return "***"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return "***"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"


def mask_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Storage options with secret values (keys, secrets, tokens, passwords) as ``***``.

    Nested tables (``client_kwargs`` ...) are masked too; URLs in values lose
    their passwords.

    Examples
    --------
    >>> mask_options({'endpoint_url': 'http://s3:9000', 'key': 'AKIA1', 'secret': 'x'})
    {'endpoint_url': 'http://s3:9000', 'key': '***', 'secret': '***'}
    >>> mask_options({'client_kwargs': {'aws_secret_access_key': 'x', 'region_name': 'eu'}})
    {'client_kwargs': {'aws_secret_access_key': '***', 'region_name': 'eu'}}
    """
    masked: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if isinstance(value, Mapping):
            masked[name] = mask_options(value)
        elif _SECRET_OPTION.search(str(name)):
            masked[name] = "***"
        elif isinstance(value, str):
            masked[name] = mask_url(value)
        else:
            masked[name] = value
    return masked
