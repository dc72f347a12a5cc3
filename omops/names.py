"""Names, references and column selectors, validated before any I/O.

A *name* is a path of segments made of ``[A-Za-z0-9_.-]`` joined by ``/``
(``prod/forecast``); no segment may be empty, ``.`` or ``..``. A *reference*
is what users type wherever a name is accepted::

    stats                 the latest revision
    stats@testing         the revision tagged 'testing'
    stats@3f2a9c          the revision whose id starts with 3f2a9c
    stats^                the revision before the latest (stats^^: two before)
    stats@testing^        the revision before the one tagged 'testing'
    stats[a,b]            only columns a and b
    stats[^sales]         every column but sales
    stats@v1[^sales,x]    both
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omops.errors import InvalidName

__all__ = [
    "MAX_NAME_LENGTH",
    "Reference",
    "check_name",
    "check_ref",
    "check_tag",
    "is_hidden",
    "parse_reference",
    "split_ref",
]

MAX_NAME_LENGTH = 255
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_TAG = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_REFERENCE = re.compile(
    r"(?P<name>[^@\[\]^]+)(?:@(?P<ref>[^@\[\]^]*))?(?P<back>\^*)"
    r"(?:\[(?P<selector>[^\[\]]*)\])?"
)
#: One ``^`` per revision back; more than this many is surely a mistake.
MAX_BACK = 255
_NAME_RULE = (
    "a name is 1-255 characters of letters, digits, '_', '.', '-' in segments "
    "joined by '/' (e.g. 'prod/forecast'), with no empty, '.' or '..' segment"
)


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid object name, else raise InvalidName.

    Examples
    --------
    >>> check_name('prod/forecast')
    'prod/forecast'
    >>> check_name('../etc/passwd')
    Traceback (most recent call last):
    ...
    omops.errors.InvalidName: invalid name '../etc/passwd': segment '..' is not allowed; a name is ...
    """
    if not isinstance(name, str):
        raise InvalidName(f"a name must be a str, got {type(name).__name__}: {name!r}")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"invalid name {shown!r}: length {len(name)}; {_NAME_RULE}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            what = "an empty segment" if not segment else f"segment {segment!r}"
            raise InvalidName(f"invalid name {shown!r}: {what} is not allowed; {_NAME_RULE}")
        if not _SEGMENT.fullmatch(segment):
            bad = sorted({c for c in segment if not _SEGMENT.fullmatch(c)})
            # omega-ml wrote name#tag; here a tag or revision follows '@'
            hint = "; for a tag or revision write name@tag" if "#" in bad else ""
            raise InvalidName(
                f"invalid name {shown!r}: character(s) {''.join(bad)!r} not allowed; "
                f"{_NAME_RULE}{hint}"
            )
    return name


def is_hidden(name: str) -> bool:
    """Whether ``name`` is internal: its first path segment starts with ``_``.

    Internal objects (``_temp/...``, ``_experiments/...``) are left out of
    listings unless they are asked for.

    Examples
    --------
    >>> is_hidden('_temp/upload')
    True
    >>> is_hidden('prod/_draft')
    False
    """
    return name.startswith("_")


def check_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag (1-64 of ``[A-Za-z0-9_.-]``)."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidName(f"invalid tag {tag!r}: a tag is 1-64 letters, digits, '_', '.' or '-'")
    return tag


def split_ref(ref: str) -> tuple[str | None, int]:
    """A revision reference as (tag or revision prefix, revisions back).

    ``'testing'`` is ``('testing', 0)``, ``'testing^'`` is ``('testing', 1)``
    and ``'^^'`` is ``(None, 2)``: two revisions before the latest.

    Examples
    --------
    >>> split_ref('v1^'), split_ref('^^'), split_ref('v1')
    (('v1', 1), (None, 2), ('v1', 0))
    """
    base = ref.rstrip("^")
    return base or None, len(ref) - len(base)


def check_ref(ref: object) -> str:
    """Return ``ref`` if it names a revision: a tag or revision prefix, then ``^`` per step back.

    Examples
    --------
    >>> check_ref('testing^')
    'testing^'
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidName(
            f"invalid tag or revision {ref!r}: give a tag, a revision prefix, or '^' for the "
            "one before the latest"
        )
    base, back = split_ref(ref)
    if base is not None:
        check_tag(base)
    if back > MAX_BACK:
        raise InvalidName(
            f"invalid tag or revision {ref[:20]!r}...: {back} steps back; at most {MAX_BACK} '^'"
        )
    return ref


@dataclass(frozen=True)
class Reference:
    """A parsed reference: object name, optional revision/tag, optional columns.

    Attributes
    ----------
    name : str
    ref : str or None
        Tag or revision prefix after ``@``, followed by one ``^`` per
        revision back (``'^'`` alone: the one before the latest; see
        :func:`split_ref`); ``None`` means ``latest``.
    columns : tuple of str or None
        Columns to keep (``[a,b]``); ``None`` keeps all.
    exclude : bool
        True for ``[^a,b]``: keep every column but these.
    """

    name: str
    ref: str | None = None
    columns: tuple[str, ...] | None = None
    exclude: bool = False


def _parse_selector(selector: str, reference: str) -> tuple[tuple[str, ...], bool]:
    exclude = selector.startswith("^")
    body = selector[1:] if exclude else selector
    columns = tuple(c.strip() for c in body.split(","))
    if not body.strip() or any(not c for c in columns):
        raise InvalidName(
            f"invalid column selector in {reference!r}: write name[a,b] to pick "
            "columns or name[^a,b] to drop them"
        )
    return columns, exclude


def parse_reference(reference: object) -> Reference:
    """Parse ``name[@ref][^...][[columns]]`` into a :class:`Reference`.

    Examples
    --------
    >>> parse_reference('stats@testing[^sales]')
    Reference(name='stats', ref='testing', columns=('sales',), exclude=True)
    >>> parse_reference('stats^^').ref
    '^^'
    """
    if not isinstance(reference, str):
        raise InvalidName(f"a name must be a str, got {type(reference).__name__}: {reference!r}")
    match = _REFERENCE.fullmatch(reference)
    if not match:
        shown = reference if len(reference) <= 80 else reference[:77] + "..."
        raise InvalidName(
            f"invalid reference {shown!r}: write name, name@tag, name@<revision> "
            "or name^ (the revision before), optionally followed by [col,...] or [^col,...]"
        )
    name = check_name(match["name"])
    ref = match["ref"]
    if ref is not None:
        check_tag(ref)
    if match["back"]:
        ref = check_ref((ref or "") + match["back"])
    columns, exclude = None, False
    if match["selector"] is not None:
        columns, exclude = _parse_selector(match["selector"], reference)
    return Reference(name=name, ref=ref, columns=columns, exclude=exclude)
