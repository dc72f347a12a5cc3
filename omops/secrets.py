"""``om.secrets``: named values encrypted at rest, per bucket.

Connection strings and storage options name secrets as ``{placeholders}``
(``postgresql://{user}:{password}@db/sales``); they are filled at read time
from ``secrets=`` or from here, never from the process environment. Values
are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under the key in
``OMOPS_SECRET_KEY`` (or ``secret_key`` in ``config.toml``) before they reach
the catalog, so the catalog database holds only tokens. Several keys,
comma-separated, rotate keys: the first encrypts, every one decrypts.
Values are never returned over REST nor printed by the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from omops.catalog import Catalog
from omops.catalog.secrets import SecretRecord
from omops.errors import ConfigError, InvalidData, InvalidName, NotFound, PluginError

__all__ = [
    "PLACEHOLDER",
    "SecretRecord",
    "Secrets",
    "check_secret_name",
    "new_key",
    "scrub",
]

#: A secret name, and so a placeholder ``{name}``: an identifier of up to 128 characters.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: ``{name}`` in a connection string or storage option.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,127})\}")
#: Longest secret value (a private key in PEM fits easily).
_MAX_VALUE = 64 * 1024
_KEY_HELP = (
    "set OMOPS_SECRET_KEY to a Fernet key (make one with `om secrets new-key`) "
    "in the environment of every process that reads or writes secrets"
)


def check_secret_name(name: object) -> str:
    """``name`` if it is a valid secret name (an identifier), else InvalidName.

    Examples
    --------
    >>> check_secret_name('db_password')
    'db_password'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidName(
            f"invalid secret name {name!r}: use letters, digits and '_' (not starting with "
            "a digit), up to 128 characters, as in the placeholder {name}"
        )
    return name


def scrub(text: str, values: Sequence[str]) -> str:
    """``text`` with every one of ``values`` (filled secrets) replaced by ``***``.

    For error messages of drivers and filesystems, which may quote a URL or
    option after its placeholders were filled.

    Examples
    --------
    >>> scrub('cannot open https://h/x.csv?token=abc123', ['abc123'])
    'cannot open https://h/x.csv?token=***'
    """
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, "***")
        quoted = quote(value, safe="")
        if quoted != value:
            text = text.replace(quoted, "***")
    return text


def new_key() -> str:
    """A new random key for ``OMOPS_SECRET_KEY``."""
    fernet = _fernet_module()
    return fernet.Fernet.generate_key().decode()


def _fernet_module() -> Any:
    try:
        from cryptography import fernet
    except ImportError:
        raise PluginError(
            "om.secrets needs the cryptography package: pip install 'cryptography>=42'"
        ) from None
    return fernet


def _cipher(key: str | None) -> Any:
    """A MultiFernet of the comma-separated ``key``; ConfigError when missing or malformed."""
    if not key or not key.strip():
        raise ConfigError(f"OMOPS_SECRET_KEY is not set, so secrets cannot be used: {_KEY_HELP}")
    fernet = _fernet_module()
    keys = []
    for i, part in enumerate(k.strip() for k in key.split(",")):
        try:
            keys.append(fernet.Fernet(part.encode()))
        except (ValueError, TypeError):
            # The key itself is never shown: only where it is wrong.
            raise ConfigError(
                f"OMOPS_SECRET_KEY key #{i + 1} is not a Fernet key (32 bytes, url-safe "
                f"base64, 44 characters); {_KEY_HELP}"
            ) from None
    return fernet.MultiFernet(keys)


class Secrets:
    """The secrets of one bucket: ``om.secrets``.

    Parameters
    ----------
    catalog : Catalog
        Where the encrypted values are kept.
    bucket : str
    key : str or None
        ``OMOPS_SECRET_KEY``: checked when a secret is put or read, so that an
        instance without a key still lists and drops secrets.

    Examples
    --------
    >>> import omops, tempfile
    >>> from omops.secrets import new_key
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> om.secrets.key = new_key()  # usually from OMOPS_SECRET_KEY
    >>> om.secrets.put('password', 's3cret')
    >>> om.secrets.list()
    ['password']
    >>> om.secrets.get('password')
    's3cret'
    """

    def __init__(self, catalog: Catalog, bucket: str, *, key: str | None) -> None:
        self.catalog = catalog
        self.bucket = bucket
        self.key = key

    def __repr__(self) -> str:
        return f"Secrets(bucket={self.bucket!r}, catalog={self.catalog!r})"

    def put(self, name: str, value: str) -> None:
        """Store ``value`` (text) encrypted under ``name``, replacing any earlier value."""
        check_secret_name(name)
        if not isinstance(value, str):
            raise InvalidData(
                f"secret {name!r} must be text, got {type(value).__name__}; convert it, e.g. str(x)"
            )
        if len(value.encode()) > _MAX_VALUE:
            raise InvalidData(f"secret {name!r} is over {_MAX_VALUE} bytes; store less")
        token = _cipher(self.key).encrypt(value.encode()).decode()
        self.catalog.secrets.set(self.bucket, name, token)

    def get(self, name: str) -> str:
        """The value of ``name``; NotFound when there is none."""
        check_secret_name(name)
        token = self.catalog.secrets.token(self.bucket, name)
        if token is None:
            raise NotFound(
                f"secret {name!r} does not exist in bucket {self.bucket!r}; store it with "
                f"om.secrets.put({name!r}, value) or `om secrets set {name}`"
            )
        return self._decrypt(name, token)

    def _decrypt(self, name: str, token: str) -> str:
        fernet = _fernet_module()
        try:
            return _cipher(self.key).decrypt(token.encode()).decode()
        except fernet.InvalidToken:
            raise ConfigError(
                f"secret {name!r} in bucket {self.bucket!r} cannot be decrypted with "
                "OMOPS_SECRET_KEY: it was encrypted with another key. Set the key it was "
                "stored with (OMOPS_SECRET_KEY='new,old' reads both), or put it again"
            ) from None

    def exists(self, name: str) -> bool:
        """Whether ``name`` is stored (without decrypting it)."""
        return self.catalog.secrets.token(self.bucket, check_secret_name(name)) is not None

    def list(self) -> list[str]:
        """Names of the secrets of this bucket, sorted (never their values)."""
        return [record.name for record in self.catalog.secrets.list(self.bucket)]

    def records(self) -> list[SecretRecord]:
        """Names with creation and change times (never values)."""
        return self.catalog.secrets.list(self.bucket)

    def drop(self, name: str, *, force: bool = False) -> bool:
        """Remove ``name``. NotFound when missing, unless ``force`` (then False)."""
        check_secret_name(name)
        if self.catalog.secrets.drop(self.bucket, name):
            return True
        if force:
            return False
        raise NotFound(f"secret {name!r} does not exist in bucket {self.bucket!r}")

    def fill(self, text: str, given: Mapping[str, str] | None = None) -> str:
        """``text`` with each ``{name}`` replaced by ``given[name]`` or the stored secret.

        Nothing comes from the process environment. A placeholder that is in
        neither raises NotFound naming it and saying how to store it.
        """
        return PLACEHOLDER.sub(lambda m: self.value(m[1], given), text)

    def value(self, name: str, given: Mapping[str, str] | None = None) -> str:
        """The value of placeholder ``name``: from ``given`` (``secrets=``) first, else stored."""
        if given is not None and name in given:
            value = given[name]
            if not isinstance(value, str):
                raise InvalidData(
                    f"secrets={{{name!r}: ...}} must be text, got {type(value).__name__}"
                )
            return value
        if self.catalog.secrets.token(self.bucket, name) is None:
            raise NotFound(
                f"placeholder {{{name}}} has no value: pass secrets={{{name!r}: ...}} or "
                f"store it with om.secrets.put({name!r}, value) in bucket {self.bucket!r}"
            )
        return self.get(name)
