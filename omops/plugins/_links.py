"""What kinds that link to data elsewhere (SQL connections, URLs) share.

Their definitions (a connection string, a URL, storage options) are kept in
``kind_meta`` and so in the catalog, in metadata and in listings: a password
or token must never be written there. A secret-looking part must therefore
be a ``{placeholder}``, filled at read time from ``secrets=`` or
``om.secrets``; a literal value is refused at put with a message that shows
it masked and says what to write instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from omops.config import mask_url
from omops.errors import InvalidData
from omops.secrets import PLACEHOLDER, scrub

__all__ = [
    "check_options",
    "fill_options",
    "is_placeholder",
    "refuse_literal",
    "scrubbed_logs",
    "secret_name",
    "shown",
]

#: Loggers of the filesystems that log the URLs they open (fsspec's HTTP logs each
#: URL, query string and so tokens included, at DEBUG).
_URL_LOGGERS = ("fsspec", "fsspec.http", "fsspec.cached", "s3fs", "gcsfs")

#: Names of URL parameters and storage options whose values are secrets.
_SECRET = re.compile(
    r"pass(word|wd)?|pwd|secret|token|sig|credential|private|^key$|_key$|key_id$|^sas$"
    r"|connection_string",
    re.IGNORECASE,
)


def secret_name(name: str) -> bool:
    """Whether a parameter or option called ``name`` holds a secret.

    Examples
    --------
    >>> secret_name('password'), secret_name('aws_secret_access_key'), secret_name('region')
    (True, True, False)
    """
    return bool(_SECRET.search(name))


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is one ``{placeholder}`` and nothing else."""
    return PLACEHOLDER.fullmatch(value) is not None


def shown(text: str) -> str:
    """``text`` as messages show it: passwords and secret parameters masked, long text cut."""
    masked = mask_url(text.strip()) or text
    return masked if len(masked) <= 120 else f"{masked[:60]}...{masked[-57:]}"


def refuse_literal(what: str, where: str, example: str) -> InvalidData:
    """The error for a secret written into a definition instead of a placeholder."""
    return InvalidData(
        f"{what} holds a literal secret in {where}; secrets are never stored in metadata. "
        f"Write a placeholder instead, e.g. {example}, and store the value with "
        "om.secrets.put(name, value) (or pass secrets={name: value} when reading)"
    )


def check_options(options: Any, what: str) -> dict[str, Any]:
    """Storage options as a plain dict, refusing literal secrets (placeholders are fine)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidData(
            f"storage_options must be a dict, got {type(options).__name__}; e.g. "
            "{'endpoint_url': 'http://...', 'key': '{aws_key}', 'secret': '{aws_secret}'}"
        )
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise InvalidData(f"storage_options keys must be text, got {key!r}")
        if secret_name(key) and not (isinstance(value, str) and is_placeholder(value)):
            raise refuse_literal(
                what, f"storage_options[{key!r}]", f"storage_options={{{key!r}: '{{{key}}}'}}"
            )
        if isinstance(value, Mapping):
            value = check_options(value, what)
        elif not isinstance(value, (str, int, float, bool, type(None), list)):
            raise InvalidData(
                f"storage_options[{key!r}] must be text, a number, a bool, a list or a dict "
                f"(it is stored as JSON), got {type(value).__name__}"
            )
        checked[key] = value
    return checked


def fill_options(options: Mapping[str, Any], fill: Any) -> dict[str, Any]:
    """``options`` with the placeholders of their text values filled by ``fill``."""
    filled: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, str):
            filled[key] = fill(value)
        elif isinstance(value, Mapping):
            filled[key] = fill_options(value, fill)
        else:
            filled[key] = value
    return filled


class _Scrub(logging.Filter):
    """Blanks the given values out of every record a logger emits (the record is kept)."""

    def __init__(self, values: Sequence[str]) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.values)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


@contextmanager
def scrubbed_logs(values: Sequence[str]) -> Iterator[None]:
    """While the block runs, the filesystems' loggers never write ``values`` (filled secrets).

    Each read adds its own filter and removes it after, so concurrent reads
    each scrub their own values.
    """
    values = [v for v in values if v]
    if not values:
        yield
        return
    scrubber = _Scrub(values)
    loggers = [logging.getLogger(name) for name in _URL_LOGGERS]
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)
