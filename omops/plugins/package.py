"""``python.package``: Python packages as scripts, stored as the wheel they build into.

``om.scripts.put(path, name)`` takes

* a folder with ``pyproject.toml`` or ``setup.py`` (or the path of that file,
  as the seed writes it: ``om scripts put ./path/to/myscript/setup.py myscript``),
* a source distribution (``.tar.gz``, ``.zip``),
* a wheel (``.whl``),
* or a :class:`Wheel` read back with ``om.scripts.get``.

Sources are built into a wheel at put time, with the ``build`` package (the
``scripts`` extra) in a copy of the folder, so the user's folder gets no
``build/`` or ``*.egg-info``. The build runs without isolation when this
Python already has what ``[build-system] requires`` (fast, needs no package
index), else in an isolated environment that pip fills from the index. A
failing build is an :class:`~omops.errors.InvalidData` carrying the end of the
build's output. The wheel is the stored blob; ``get`` returns it as a
:class:`Wheel`.

Which function runs: the entry point ``run`` of group ``omops.scripts``
(``[project.entry-points."omops.scripts"] run = "mypkg.main:run"``) if the
package declares one, else ``run`` in its top-level module (the only one, or
the one named like the package).
"""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omops._archives import extract_all
from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, PluginError
from omops.plugins.base import Plugin, ReadQuery, Stored

__all__ = ["BUILD_TIMEOUT", "ENTRY_POINT_GROUP", "PackagePlugin", "Wheel", "build_wheel"]

#: Entry-point group naming the function a script package runs.
ENTRY_POINT_GROUP = "omops.scripts"
#: Seconds a build may take (packages with C extensions take a while).
BUILD_TIMEOUT = 900
#: Characters of the build's output kept in an error message.
OUTPUT_TAIL = 4000
#: ``name-version(-build)?-python-abi-platform.whl`` (PEP 427).
_WHEEL_NAME = re.compile(
    r"(?P<name>[^-\s/\\]+)-(?P<version>[^-\s/\\]+)(-\d[^-\s/\\]*)?-[^-\s/\\]+-[^-\s/\\]+-[^-\s/\\]+\.whl"
)
_SOURCE_MARKERS = ("pyproject.toml", "setup.py")
#: Left out of the copy a build runs in, at any depth.
_NEVER_COPIED = frozenset(
    {".git", ".hg", ".svn", ".venv", ".tox", ".nox", "__pycache__", ".mypy_cache", ".pytest_cache"}
    | {".ruff_cache", "node_modules"}
)
#: Left out at the top only: earlier build output (a subpackage may be called ``build``).
_OLD_OUTPUT = ("build", "dist")
_WHAT = (
    "a folder with pyproject.toml or setup.py, that setup.py or pyproject.toml, "
    "an sdist (.tar.gz, .zip) or a wheel (.whl)"
)


@dataclass(frozen=True)
class Wheel:
    """A built package: its wheel file's name and bytes.

    ``om.scripts.get(name)`` returns one; ``om.scripts.put(wheel, name)``
    stores it again.

    Attributes
    ----------
    filename : str
        The wheel's file name, ``name-version-python-abi-platform.whl``.
    data : bytes
        The wheel (a zip file).
    """

    filename: str
    data: bytes

    def __repr__(self) -> str:
        return f"<Wheel {self.filename} ({len(self.data)} bytes)>"

    @property
    def sha256(self) -> str:
        """SHA-256 of the wheel's bytes (hex)."""
        return hashlib.sha256(self.data).hexdigest()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the wheel into ``folder`` under its file name; returns the path."""
        path = Path(folder) / self.filename
        path.write_bytes(self.data)
        return path


class PackagePlugin(Plugin):
    """``python.package``: a Python package built into a wheel, for ``om.scripts``."""

    kind = "python.package"
    stores = ("scripts",)

    @classmethod
    def supports(cls, obj: Any) -> bool:
        # Any existing path: one that is not a package gets a clear error from put,
        # not "no plugin" (this plugin is only asked about objects for om.scripts).
        if isinstance(obj, Wheel):
            return True
        if isinstance(obj, os.PathLike) or isinstance(obj, str):
            text = os.fspath(obj)
            return (
                isinstance(text, str)
                and 0 < len(text) < 4096
                and "\0" not in text
                and os.path.exists(os.path.expanduser(text))
            )
        return False

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        wheel, origin = _wheel_of(obj)
        info = inspect_wheel(wheel)
        key = blobs.put_bytes(wheel.data)
        meta = {**info, "built_from": origin}
        return Stored(parts=[PartRecord(blob=key, size=len(wheel.data))], kind_meta=meta)

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Wheel:
        self._no_query(query)
        return Wheel(str(kind_meta["wheel"]), blobs.read(self._single(parts, self.kind).blob))

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("package", "version", "wheel", "sha256", "requires", "entry", "built_from")
        return {key: kind_meta.get(key) for key in keys}


# -- from what was given to a wheel -------------------------------------------


def _wheel_of(obj: Any) -> tuple[Wheel, str]:
    """The wheel ``obj`` is or builds into, and what it was (wheel, folder, sdist)."""
    if isinstance(obj, Wheel):
        return obj, "wheel"
    if not isinstance(obj, (str, os.PathLike)):
        raise InvalidData(f"python.package stores {_WHAT}; got a {type(obj).__name__}")
    given = os.fspath(obj)
    path = Path(os.path.expanduser(given))
    if not path.exists():
        raise InvalidData(f"{given!r} does not exist; give {_WHAT}")
    if path.is_file() and path.name in _SOURCE_MARKERS:
        path = path.parent
    if path.is_dir():
        if not any((path / m).is_file() for m in _SOURCE_MARKERS):
            raise InvalidData(
                f"folder {given!r} has neither pyproject.toml nor setup.py; give {_WHAT}. "
                "To store the path as text, pass kind='python.json'"
            )
        return build_wheel(path), "folder"
    name = path.name.lower()
    if name.endswith(".whl"):
        return Wheel(path.name, path.read_bytes()), "wheel"
    if name.endswith((".tar.gz", ".tgz", ".zip")):
        with tempfile.TemporaryDirectory(prefix="omops-sdist-") as tmp:
            return build_wheel(_unpack_sdist(path, Path(tmp))), "sdist"
    raise InvalidData(
        f"{given!r} is not a Python package; give {_WHAT}. To store the path as text, "
        "pass kind='python.json'"
    )


def _unpack_sdist(path: Path, into: Path) -> Path:
    """Extract an sdist safely; returns its project folder."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.startswith(("/", "\\")) or ".." in Path(member).parts:
                        raise InvalidData(f"{path.name}: member {member!r} leaves the archive")
                archive.extractall(into)
        else:
            with tarfile.open(path) as archive:
                extract_all(archive, into)  # no links out, no absolute paths
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise InvalidData(f"cannot unpack {str(path)!r} as an sdist: {exc}") from None
    folders = [p for p in into.iterdir() if p.is_dir()]
    found = [f for f in [into, *folders] if any((f / m).is_file() for m in _SOURCE_MARKERS)]
    if not found:
        raise InvalidData(
            f"{str(path)!r} holds no pyproject.toml or setup.py (at its top or in its one "
            "folder); it is not an sdist"
        )
    return found[0]


def _ignored(root: Path) -> Any:
    def ignore(folder: str, names: list[str]) -> set[str]:
        left_out = {n for n in names if n in _NEVER_COPIED}
        if Path(folder) == root:
            left_out |= {n for n in names if n in _OLD_OUTPUT or n.endswith(".egg-info")}
        return left_out

    return ignore


def build_wheel(source: Path) -> Wheel:
    """Build the project in folder ``source`` into a wheel (the folder is not changed).

    Raises
    ------
    InvalidData
        The folder is no project, or the build failed (with the build's output).
    PluginError
        The ``build`` package is missing: ``pip install 'omops[scripts]'``.
    """
    if not any((source / m).is_file() for m in _SOURCE_MARKERS):
        raise InvalidData(
            f"folder {str(source)!r} has neither pyproject.toml nor setup.py; give {_WHAT}"
        )
    requires = _build_requires(source)
    try:
        from build import check_dependency
    except ImportError:
        raise PluginError(
            "building a script package needs the build package: pip install 'omops[scripts]'"
        ) from None
    with tempfile.TemporaryDirectory(prefix="omops-build-") as tmp:
        copy, out = Path(tmp) / "src", Path(tmp) / "dist"
        try:
            shutil.copytree(source, copy, ignore=_ignored(source))
        except (OSError, shutil.Error) as exc:
            raise InvalidData(f"cannot read folder {str(source)!r}: {exc}") from None
        here = all(not any(check_dependency(r)) for r in requires)
        code, output = _run_build(copy, out, isolated=not here)
        if code != 0 and here and "Missing dependencies" in output:
            # The backend wants more than [build-system] says (e.g. old setuptools: wheel).
            code, output = _run_build(copy, out, isolated=True)
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if code != 0 or len(wheels) != 1:
            raise InvalidData(
                f"building {str(source)!r} into a wheel failed (exit status {code}); "
                f"fix the package and put it again. The build said:\n{output[-OUTPUT_TAIL:]}"
            )
        return Wheel(wheels[0].name, wheels[0].read_bytes())


def _build_requires(source: Path) -> list[str]:
    """``[build-system] requires``, or setuptools' default for a project without one."""
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        return ["setuptools>=40.8.0"]
    try:
        table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidData(f"{str(pyproject)!r} is not valid TOML: {exc}") from None
    requires = table.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise InvalidData(f"{str(pyproject)!r}: [build-system] requires must be a list of strings")
    return requires


def _run_build(source: Path, out: Path, *, isolated: bool) -> tuple[int, str]:
    """``python -m build --wheel``; (exit status, output)."""
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)]
    if not isolated:
        command.insert(4, "--no-isolation")
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            cwd=source,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        return -1, f"{output}\n(stopped after {BUILD_TIMEOUT} s)"
    return done.returncode, done.stdout + done.stderr


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# -- what a wheel holds ------------------------------------------------------


def inspect_wheel(wheel: Wheel) -> dict[str, Any]:
    """Name, version, requirements and entry function of a wheel (its kind_meta)."""
    match = _WHEEL_NAME.fullmatch(wheel.filename)
    if match is None:
        raise InvalidData(
            f"{wheel.filename!r} is not a wheel file name (name-version-python-abi-platform.whl)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(wheel.data))
    except zipfile.BadZipFile:
        raise InvalidData(f"{wheel.filename!r} is not a wheel: not a zip file") from None
    with archive:
        names = archive.namelist()
        infos = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(infos) != 1:
            raise InvalidData(f"{wheel.filename!r} is not a wheel: no .dist-info/METADATA in it")
        dist_info = infos[0].rpartition("/")[0]
        metadata = email.parser.Parser().parsestr(archive.read(infos[0]).decode("utf-8"))
        entry_points = _read(archive, f"{dist_info}/entry_points.txt")
        top_level = _read(archive, f"{dist_info}/top_level.txt")
    package = metadata.get("Name") or match["name"]
    return {
        "package": package,
        "version": metadata.get("Version") or match["version"],
        "wheel": wheel.filename,
        "sha256": wheel.sha256,
        "requires": list(metadata.get_all("Requires-Dist") or []),
        "entry": _entry(wheel.filename, package, entry_points, top_level, names),
    }


def _read(archive: zipfile.ZipFile, name: str) -> str | None:
    try:
        return archive.read(name).decode("utf-8")
    except KeyError:
        return None


def _entry(
    filename: str,
    package: str,
    entry_points: str | None,
    top_level: str | None,
    names: list[str],
) -> str:
    """``module:function`` that a run calls."""
    if entry_points:
        parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names' case
        try:
            parser.read_string(entry_points)
        except configparser.Error as exc:
            raise InvalidData(f"{filename!r}: entry_points.txt is malformed: {exc}") from None
        if parser.has_section(ENTRY_POINT_GROUP):
            found = dict(parser.items(ENTRY_POINT_GROUP))
            if "run" in found or len(found) == 1:
                return (found.get("run") or next(iter(found.values()))).strip()
            raise InvalidData(
                f"{filename!r} declares several {ENTRY_POINT_GROUP} entry points "
                f"({', '.join(sorted(found))}); name the one to run 'run'"
            )
    modules = _top_level_modules(top_level, names)
    wanted = re.sub(r"[-_.]+", "_", package).lower()
    named = [m for m in modules if m.lower() == wanted]
    if len(named) == 1 or len(modules) == 1:
        return f"{(named or modules)[0]}:run"
    found_text = ", ".join(modules) or "none"
    raise InvalidData(
        f"cannot tell which module of {filename!r} has run(om, **kwargs): its top-level modules "
        f"are {found_text}. Declare it in pyproject.toml: "
        f'[project.entry-points."{ENTRY_POINT_GROUP}"] run = "module:run"'
    )


def _top_level_modules(top_level: str | None, names: list[str]) -> list[str]:
    if top_level:
        listed = sorted({line.strip() for line in top_level.splitlines() if line.strip()})
        if listed:
            return listed
    found = set()
    for name in names:
        first, _, rest = name.partition("/")
        if first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        if rest:
            found.add(first)
        elif first.endswith(".py"):
            found.add(first[:-3])
        elif first.endswith((".so", ".pyd")):
            found.add(first.partition(".")[0])
    return sorted(found)
