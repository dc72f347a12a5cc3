"""Extract tar archives safely on every Python 3.11.

Python 3.11.4 added extraction filters (``extractall(filter="data")``: no
absolute paths, nothing outside the destination, no device files, no links
out, no setuid bits, no foreign owners). Debian 12's Python is 3.11.2, which
has none: :func:`extract_all` applies the same rules itself there, member by
member, so a stored model folder or an uploaded sdist unpacks the same way on
both. A member that breaks a rule raises :class:`UnsafeMember`, a
``tarfile.TarError`` as the stdlib's own filter errors are.
"""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path

__all__ = ["UnsafeMember", "extract_all"]


class UnsafeMember(tarfile.TarError):
    """A member that would land outside the destination, or is not plain data."""


def extract_all(archive: tarfile.TarFile, into: str | os.PathLike[str]) -> None:
    """Extract every member of ``archive`` below ``into`` (streamed archives too)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(into, filter="data")
        return
    root = os.path.realpath(into)
    for member in archive:  # one pass: works on stream-mode archives ("r|")
        archive.extract(_checked(member, root), root, set_attrs=not member.isdir())


def _checked(member: tarfile.TarInfo, root: str) -> tarfile.TarInfo:
    """``member`` as the stdlib's "data" filter passes it, or UnsafeMember."""
    name = member.name.lstrip("/" + os.sep)  # as the stdlib does: /a/b lands in into/a/b
    if Path(name).is_absolute():
        raise UnsafeMember(f"member {member.name!r} has an absolute path")
    target = os.path.realpath(os.path.join(root, name))
    if not _inside(target, root):
        raise UnsafeMember(f"member {name!r} would be written outside the destination")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeMember(f"member {name!r} is a device or pipe, not data")
    if member.issym():
        linked = os.path.join(os.path.dirname(target), member.linkname)
        if os.path.isabs(member.linkname) or not _inside(os.path.realpath(linked), root):
            raise UnsafeMember(f"member {name!r} links outside the destination")
    elif member.islnk():
        if not _inside(os.path.realpath(os.path.join(root, member.linkname)), root):
            raise UnsafeMember(f"member {name!r} links outside the destination")
    member = copy.copy(member)  # (TarInfo.replace came with the filters, in 3.11.4)
    member.name = name
    # Owned by whoever extracts, not by the archive's user (tarfile chowns as root).
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    if member.isreg() or member.islnk():
        # No setuid/setgid/sticky, no group or other write; the owner may read and write.
        member.mode = (member.mode or 0o644) & 0o755 | 0o600
    return member


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root
