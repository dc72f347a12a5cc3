"""Safe tar extraction on every Python 3.11 (omops._archives).

Each case runs twice: with the stdlib's "data" filter (Python >= 3.11.4) and
with omops' own checks, which Debian 12's Python 3.11.2 uses (the filter is
hidden from tarfile for that run).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from omops._archives import extract_all


@pytest.fixture(params=["stdlib filter", "omops checks"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "omops checks":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, **attributes: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attributes.items():
        setattr(info, key, value)
    return info


def unpack(data: bytes, into: Path, *, stream: bool = False) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|" if stream else "r") as tar:
        extract_all(tar, into)


@pytest.mark.parametrize("stream", [False, True])
def test_files_folders_and_links_inside_are_extracted(python, tmp_path, stream):
    data = archive(
        (entry("model", tarfile.DIRTYPE, mode=0o755), None),
        (entry("model/MLmodel", mode=0o644), b"flavors: {}\n"),
        (entry("model/data/weights.bin", mode=0o644), b"\x00\x01"),
        (entry("model/latest", tarfile.SYMTYPE, linkname="data/weights.bin"), None),
    )
    unpack(data, tmp_path, stream=stream)
    assert (tmp_path / "model" / "MLmodel").read_text() == "flavors: {}\n"
    assert (tmp_path / "model" / "data" / "weights.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "model" / "latest").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize(
    "member",
    [
        entry("../evil"),
        entry("a/../../evil"),
        entry("out", tarfile.SYMTYPE, linkname="/etc/passwd"),
        entry("out", tarfile.SYMTYPE, linkname="../../etc/passwd"),
        entry("out", tarfile.LNKTYPE, linkname="../outside"),
        entry("device", tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("pipe", tarfile.FIFOTYPE),
    ],
    ids=[
        "parent",
        "parent-nested",
        "symlink-abs",
        "symlink-up",
        "hardlink-up",
        "device",
        "fifo",
    ],
)
def test_members_that_leave_the_folder_or_are_not_data_are_refused(python, tmp_path, member):
    into = tmp_path / "into"
    into.mkdir()
    data = archive((member, b"x" if member.isreg() else None))
    with pytest.raises(tarfile.TarError):
        unpack(data, into)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_setuid_bits_and_foreign_owners_are_dropped(python, tmp_path):
    data = archive(
        (entry("tool", mode=0o4777, uid=4242, gid=4242, uname="nobody", gname="nogroup"), b"#!")
    )
    unpack(data, tmp_path)
    status = os.stat(tmp_path / "tool")
    assert not status.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWGRP | stat.S_IWOTH)
    assert status.st_mode & stat.S_IRUSR and status.st_mode & stat.S_IWUSR
    assert (status.st_uid, status.st_gid) == (os.getuid(), os.getgid())


def test_a_leading_slash_is_dropped_as_the_stdlib_does(python, tmp_path):
    unpack(archive((entry("/etc/evil"), b"x")), tmp_path)
    assert (tmp_path / "etc" / "evil").read_bytes() == b"x"
