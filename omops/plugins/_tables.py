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
* booleans and numbers in one place of a column (the column itself, the items
  of its lists, one key of its dicts): Arrow would silently convert one into
  the other;
* empty structs (a ``{}`` cell in a column of only ``{}``): Parquet has no
  struct without fields.
"""

from __future__ import annotations

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
    if not all(type(c) is str for c in names) and "mixed" in frame.columns.inferred_type:
        raise InvalidData(
            f"column names {names[:10]} mix types; they would read back as text: rename "
            "them, e.g. df.columns = df.columns.map(str)"
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


def _mixes_booleans_and_numbers(kinds: set[type]) -> bool:
    booleans = {k for k in kinds if issubclass(k, bool) or k.__name__ == "bool"}
    numbers = {
        k
        for k in kinds - booleans
        if issubclass(k, (int, float)) or (k.__module__ == "numpy" and hasattr(k, "dtype"))
    }
    return bool(booleans) and bool(numbers)


def _check_cells(name: Any, values: list[Any]) -> None:
    """Depth and one type per place: the values at each path (list items, dict keys).

    Arrow gives every place in a column one type: where booleans and numbers
    meet, it silently turns one into the other (``[0.0, False]`` reads back as
    ``[0.0, 0.0]``), so that is refused. Walked a level at a time; a level of
    plain values costs one C-speed pass.
    """
    pending: list[tuple[tuple[Any, ...], list[Any]]] = [((), values)]
    depth = 0
    while pending:
        found: dict[tuple[Any, ...], list[Any]] = {}
        for path, items in pending:
            kinds = set(map(type, items))
            if _mixes_booleans_and_numbers(kinds):
                where = "".join(f"[{k!r}]" if k != "[]" else "[i]" for k in path)
                raise InvalidData(
                    f"column {str(name)!r} mixes booleans and numbers at {where or 'the top'}; "
                    "Arrow would turn one into the other: give each place one type"
                )
            if _SCALARS.issuperset(kinds):
                continue
            for value in items:
                if isinstance(value, dict):
                    for key, item in value.items():
                        if isinstance(key, str) and "\0" in key:
                            raise InvalidData(_nul_key_message(name, key))
                        found.setdefault((*path, key), []).append(item)
                elif isinstance(value, (list, tuple)):
                    found.setdefault((*path, "[]"), []).extend(value)
                elif hasattr(value, "ndim") and hasattr(value, "dtype"):  # a NumPy array
                    if value.dtype.hasobject:
                        found.setdefault((*path, "[]"), []).extend(value.ravel().tolist())
                    elif value.ndim + depth > MAX_DEPTH:
                        raise InvalidData(_too_deep_message(name))
        if found:
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidData(_too_deep_message(name))
        pending = list(found.items())


def check_objects(frame: Any) -> None:
    """Refuse object columns Arrow would change or Parquet could not read back.

    Cells nested deeper than :data:`MAX_DEPTH`, and booleans mixed with numbers
    in one place. Only object columns are looked at (typed columns cannot nest
    Python values), each only as deep as it goes.
    """
    import numpy as np

    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, np.dtype) and dtype.kind == "O":  # not str, categories ...
            _check_cells(name, list(frame[name].array))


def _nul_key_message(name: Any, key: str) -> str:
    return (
        f"column {str(name)!r} holds a dict key {key!r} with a NUL character, which Parquet "
        "cannot store (it would read back cut short); rename the key"
    )


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
                for i in range(kind.num_fields):
                    if "\0" in kind.field(i).name:
                        raise InvalidData(_nul_key_message(field.name, kind.field(i).name))
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
