"""The one exception tree of omops.

Every error a user can see is an :class:`OmopsError`. Each also inherits the
builtin exception a caller would naturally catch, so ``except KeyError`` or
``except ValueError`` keep working::

    OmopsError (Exception)
    ├── NotFound (LookupError)            name, revision or tag does not exist
    ├── AlreadyExists (ValueError)        an object that must be new exists
    ├── InvalidName (ValueError)          a name, tag or reference is malformed
    ├── InvalidQuery (ValueError)         a filter, selector or column is wrong
    ├── InvalidData (ValueError)          the object cannot be stored as asked
    ├── ConfigError (ValueError)          a setting is missing or malformed
    │   └── SchemaError                   the catalog's schema is not the one omops needs
    ├── PluginError (RuntimeError)        no plugin fits, or its extra is missing
    ├── StorageError (OSError)            the catalog or blob store failed
    ├── TaskFailed (RuntimeError)         a runtime task raised remotely
    ├── TaskTimeout (TimeoutError)        a task did not finish in time
    ├── Unauthorized (PermissionError)    no or unknown API key
    └── Forbidden (PermissionError)       the key may not do this

Messages say what was wrong, what came in, and what to do.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "Forbidden",
    "InvalidData",
    "InvalidName",
    "InvalidQuery",
    "NotFound",
    "OmopsError",
    "PluginError",
    "SchemaError",
    "StorageError",
    "TaskFailed",
    "TaskTimeout",
    "Unauthorized",
]


class OmopsError(Exception):
    """Base of every error raised by omops."""


class NotFound(OmopsError, LookupError):
    """A name, revision, tag or task id does not exist."""

    def __str__(self) -> str:
        # LookupError/KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class AlreadyExists(OmopsError, ValueError):
    """An object that has to be new exists already."""


class InvalidName(OmopsError, ValueError):
    """A name, tag or revision reference is malformed."""


class InvalidQuery(OmopsError, ValueError):
    """A filter, column selector or column name is not valid for the data."""


class InvalidData(OmopsError, ValueError):
    """The object cannot be stored or read as asked (type, schema, shape)."""


class ConfigError(OmopsError, ValueError):
    """A configuration value is missing or malformed."""


class SchemaError(ConfigError):
    """The catalog's schema revision is not the one this omops needs.

    Older: run ``om db upgrade``. Newer: upgrade omops. omops creates the
    schema of a new, empty catalog itself but never migrates an existing one
    implicitly.
    """


class PluginError(OmopsError, RuntimeError):
    """No plugin supports the object, the kind is unknown, or its extra is missing."""


class StorageError(OmopsError, OSError):
    """The catalog or the blob store failed or holds inconsistent data."""


class TaskFailed(OmopsError, RuntimeError):
    """A runtime task raised an exception where it ran.

    Attributes
    ----------
    exc_type : str
        Name of the remote exception type, e.g. ``"ValueError"``.
    exc_message : str
        The remote exception's message.
    remote_traceback : str
        The formatted traceback as text, from the process that ran the task.
    """

    def __init__(self, exc_type: str, exc_message: str, remote_traceback: str = "") -> None:
        # All three in args, so the exception rebuilds from args after JSON transport.
        super().__init__(exc_type, exc_message, remote_traceback)
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.exc_type}: {self.exc_message}"


class TaskTimeout(OmopsError, TimeoutError):
    """A task result was not ready within the given timeout."""


class Unauthorized(OmopsError, PermissionError):
    """No API key was given, or the key is unknown or revoked."""


class Forbidden(OmopsError, PermissionError):
    """The API key is valid but may not do this (bucket or role)."""
