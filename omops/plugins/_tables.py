"""What a stored DataFrame may hold: checked before anything is written.

A put that is accepted must read back. Parquet (and Arrow's pandas
conversion) cannot hold everything pandas can, and some of what they cannot
hold used to be written anyway and fail on every later read. These checks
refuse it up front with :class:`~omops.errors.InvalidData`:

* column names with a NUL character, names that collide once made strings
  (``1`` and ``'1'``), names pandas' Arrow conversion reserves
  (``__index_level_0__``), and names that are not strings and would come back
  as something else (``True``, ``('a', 1)``, a mix of types);
* cells nested deeper than :data:`MAX_DEPTH` lists, dicts or maps (Parquet
  stops reading at a fixed schema depth; deeper Python values can even crash
  the Arrow converter, so object columns are measured before conversion);
* empty structs (a ``{}`` cell in a column of only ``{}``): Parquet has no
  struct without fields.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from omops.errors import InvalidData

__all__ = ["MAX_DEPTH", "check_columns", "check_objects", "check_schema", "check_names_round_trip"]

#: Most levels of lists, dicts (structs) or maps inside one cell. Parquet reads
#: schemas up to 100 levels deep, where a list or a map takes 2.
MAX_DEPTH = 32
_RESERVED_PREFIX = "__index_level_"
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def check_columns(frame: Any) -> None:
    """Refuse column (and index) names that cannot be stored or would not read back."""
    names = list(frame.columns)
    levels = [n for n in frame.index.names if n is not None]
    for name in [*names, *levels]:
        text = str(name)
        if "\0" in text:
            raise InvalidData(
                f"column or index name {text!r} contains a NUL character, which Parquet "
                "cannot store; rename it"
            )
    for name in names:
        if str(name).startswith(_RESERVED_PREFIX):
            raise InvalidData(
                f"column name {name!r} is reserved for pandas' unnamed index levels; rename it"
            )
    texts = [str(n) for n in names]
    if len(set(texts)) != len(texts):
        seen: set[str] = set()
        dupes = sorted({t for t in texts if t in seen or seen.add(t)})
        raise InvalidData(
            f"duplicate column names {dupes} (as strings: stored columns are named by text); "
            "rename them before storing"
        )
    clash = sorted({str(n) for n in levels} & set(texts))
    if clash:
        raise InvalidData(
            f"index level name(s) {clash} are also column names; rename the index, "
            "e.g. df.index.name = 'row'"
        )


def check_names_round_trip(frame: Any, table: pa.Table) -> None:
    """Refuse non-string column names that would read back as other values."""
    columns = frame.columns
    if all(type(c) is str for c in columns):
        return
    back = table.schema.empty_table().to_pandas().columns
    if not (back.equals(columns) and back.dtype == columns.dtype and back.names == columns.names):
        raise InvalidData(
            f"column names {list(columns)[:10]} would read back as {list(back)[:10]}: only "
            "strings, or names of one numeric or date type, round-trip; rename them, "
            "e.g. df.columns = df.columns.map(str)"
        )


def _too_deep(values: Iterable[Any], limit: int) -> bool:
    """Whether any value nests lists, tuples, dicts or arrays more than ``limit`` deep."""
    level: list[Any] = list(values)
    depth = 0
    while level:
        if _SCALARS.issuperset(map(type, level)):  # C speed: the common case
            return False
        containers = [v for v in level if type(v) not in _SCALARS]
        depth += 1
        if depth > limit:
            return True
        nested: list[Any] = []
        for value in containers:
            if isinstance(value, dict):
                nested.append(value.values())
            elif isinstance(value, (list, tuple)):
                nested.append(value)
            elif hasattr(value, "ndim") and hasattr(value, "dtype"):  # a NumPy array
                if value.dtype.hasobject:
                    nested.append(value.ravel().tolist())
                elif value.ndim + depth - 1 > limit:
                    return True
        level = list(itertools.chain.from_iterable(nested))
    return False


def check_objects(frame: Any) -> None:
    """Refuse cells of object columns nested deeper than :data:`MAX_DEPTH`.

    Only object columns are looked at (typed columns cannot nest in Python
    values), and each only as deep as it goes.
    """
    for name, dtype in frame.dtypes.items():
        if dtype == object and _too_deep(frame[name].array, MAX_DEPTH):
            raise InvalidData(_too_deep_message(name))


def _too_deep_message(name: Any) -> str:
    return (
        f"column {str(name)!r} holds values nested more than {MAX_DEPTH} levels deep "
        f"(lists, dicts or maps inside each other); Parquet cannot read such data back. "
        "Flatten it, or store it as JSON text (e.g. df[col].map(json.dumps))"
    )


def check_schema(schema: pa.Schema) -> None:
    """Refuse column types Parquet cannot write or read back (depth, empty structs)."""
    for field in schema:
        stack: list[tuple[pa.DataType, int]] = [(field.type, 0)]
        while stack:
            kind, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise InvalidData(_too_deep_message(field.name))
            if pa.types.is_struct(kind):
                if kind.num_fields == 0:
                    raise InvalidData(
                        f"column {field.name!r} holds empty dicts ({{}}) only, at some "
                        "level: Parquet cannot store a struct without fields; use None "
                        "for a missing value, or give the dicts a key"
                    )
                stack.extend((kind.field(i).type, depth + 1) for i in range(kind.num_fields))
            elif pa.types.is_map(kind):
                stack.extend(((kind.key_type, depth + 1), (kind.item_type, depth + 1)))
            elif (
                pa.types.is_list(kind)
                or pa.types.is_large_list(kind)
                or pa.types.is_fixed_size_list(kind)
                or pa.types.is_list_view(kind)
                or pa.types.is_large_list_view(kind)
            ):
                stack.append((kind.value_type, depth + 1))
            elif pa.types.is_dictionary(kind):
                stack.append((kind.value_type, depth))
            elif pa.types.is_union(kind):
                raise InvalidData(
                    f"column {field.name!r} has a union type, which Parquet cannot store"
                )
