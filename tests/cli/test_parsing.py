"""Command-line text to API arguments: filters, attributes, columns, masked URLs."""

from __future__ import annotations

import pytest
import typer

from omops.cli._parsing import parse_attributes, parse_columns, parse_filters, parse_value
from omops.config import mask_url

DTYPES = {"region": "large_string", "sales": "int64", "zip": "string", "x__gt": "double"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100", 100),
        ("1.5", 1.5),
        ("true", True),
        ("EU", "EU"),
        ("01234", "01234"),
        ('"quoted"', "quoted"),
        ("[1, 2]", [1, 2]),
        ("", ""),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value
    assert parse_value(text, as_text=True) == text


def test_parse_filters_uses_column_types() -> None:
    filters = parse_filters(
        [
            "sales__gte=100",
            "zip=01234",
            "region__in=EU, US",
            "sales__between=1,5",
            "zip__isnull",
            "region__notnull=false",
            "x__gt=2",
        ],
        DTYPES,
    )
    assert filters == {
        "sales__gte": 100,
        "zip": "01234",
        "region__in": ["EU", "US"],
        "sales__between": [1, 5],
        "zip__isnull": True,
        "region__notnull": False,
        "x__gt": 2,  # a column named 'x__gt' compared for equality, not x > 2
    }


def test_parse_filters_keeps_numbers_as_text_for_text_columns() -> None:
    assert parse_filters(["region=1", "region__in=1,2"], DTYPES) == {
        "region": "1",
        "region__in": ["1", "2"],
    }
    assert parse_filters(["region=1"]) == {"region": 1}  # no schema: JSON when it is JSON


def test_parse_filters_renames_keys_that_collide_with_get() -> None:
    assert parse_filters(["name=a", "revision=2", "columns=x"]) == {
        "name__eq": "a",
        "revision__eq": 2,
        "columns__eq": "x",
    }


@pytest.mark.parametrize("spec", ["sales", "=1", "__gte=1", "zip__isnull=perhaps"])
def test_parse_filters_rejects_malformed(spec: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_filters([spec], DTYPES)


def test_parse_filters_rejects_duplicates() -> None:
    with pytest.raises(typer.BadParameter, match="twice"):
        parse_filters(["sales=1", "sales=2"], DTYPES)


def test_parse_attributes() -> None:
    assert parse_attributes(["owner=ana", "expr=a=b", "empty="]) == {
        "owner": "ana",
        "expr": "a=b",
        "empty": "",
    }
    with pytest.raises(typer.BadParameter):
        parse_attributes(["novalue"])
    with pytest.raises(typer.BadParameter):
        parse_attributes(["=x"])


def test_parse_columns() -> None:
    assert parse_columns(None) is None
    assert parse_columns("a, b,,c") == ["a", "b", "c"]
    with pytest.raises(typer.BadParameter):
        parse_columns(" , ")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://ana:s3cret@db:5432/omops", "postgresql://ana:***@db:5432/omops"),
        ("postgresql+psycopg://u:p@ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("amqp://guest:guest@localhost//", "amqp://guest:***@localhost//"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("s3://key:se/cret@bucket/p", "s3://key:***@bucket/p"),
        ("s3://bucket/p?token=abc&region=eu", "s3://bucket/p?token=***&region=eu"),
        ("az://c/p?sv=1&sig=xyz", "az://c/p?sv=1&sig=***"),
        ("postgresql://ana@db/omops", "postgresql://ana@db/omops"),
        ("sqlite:////home/ana/.omops/catalog.sqlite", "sqlite:////home/ana/.omops/catalog.sqlite"),
        ("/home/ana/.omops/blobs", "/home/ana/.omops/blobs"),
        ("file:///data/a:b@c", "file:///data/a:b@c"),
        ("http://u:p@[::1", "http://u:***@[::1"),
        (None, None),
    ],
)
def test_mask_url(url: str | None, masked: str | None) -> None:
    assert mask_url(url) == masked
