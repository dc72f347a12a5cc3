import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from omops.catalog import LATEST, Catalog, NewRevision, PartRecord
from omops.catalog._tables import objects, parts, revisions, tags
from omops.errors import ConfigError, InvalidName, NotFound


def blob(text):
    return hashlib.sha256(text.encode()).hexdigest()


def part(text, rows=None):
    return PartRecord(blob=blob(text), size=len(text), rows=rows)


def new(*texts, kind="test.kind", append=False, rows=None, **kwargs):
    return NewRevision(
        kind=kind,
        kind_meta={"texts": list(texts)},
        parts=[part(t, rows) for t in texts],
        append=append,
        **kwargs,
    )


@pytest.fixture
def catalog(catalog_url):
    instance = Catalog(catalog_url)
    yield instance
    instance.close()


def count(catalog, table):
    with catalog.engine().connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_commit_creates_object_and_revision(catalog):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    obj, rev = catalog.commit("b", "datasets", "x", new("one", attributes={"a": 1}))
    assert (obj.bucket, obj.store, obj.name, obj.kind) == ("b", "datasets", "x", "test.kind")
    assert obj.attributes == {"a": 1}
    assert obj.origin is None
    assert obj.created.tzinfo is not None
    assert obj.created <= obj.modified
    assert rev.object_id == obj.id
    assert len(rev.revision) == 40
    assert rev.parent is None
    assert rev.base_id is None
    assert rev.kind_meta == {"texts": ["one"]}
    assert rev.size == 3
    assert rev.created.tzinfo is not None
    assert catalog.find("b", "datasets", "x") == obj
    assert catalog.get("b", "datasets", "x") == obj
    read = catalog.get("b", "datasets", "x")  # UTC-aware on read, on every backend
    assert read.created.utcoffset() == dt.timedelta(0)
    assert before <= read.created <= dt.datetime.now(dt.UTC)


def test_objects_are_scoped_by_bucket_and_store(catalog):
    catalog.commit("b1", "datasets", "x", new("one"))
    catalog.commit("b2", "datasets", "x", new("two"))
    catalog.commit("b1", "models", "x", new("three"))
    assert (
        len(
            {
                catalog.get(*key, "x").id
                for key in [("b1", "datasets"), ("b2", "datasets"), ("b1", "models")]
            }
        )
        == 3
    )
    assert [o.name for o in catalog.list("b1", "datasets")] == ["x"]
    assert catalog.find("b3", "datasets", "x") is None
    with pytest.raises(NotFound, match=r"dataset 'x' does not exist in bucket 'b3'"):
        catalog.get("b3", "datasets", "x")


def test_resolve_latest_tag_and_prefix(catalog):
    obj, first = catalog.commit("b", "datasets", "x", new("one", tags=["v1"]))
    _, second = catalog.commit("b", "datasets", "x", new("two"))
    assert second.parent == first.revision
    assert second.revision != first.revision
    assert catalog.resolve(obj.id) == second
    assert catalog.resolve(obj.id, LATEST) == second
    assert catalog.resolve(obj.id, "v1") == first
    assert catalog.resolve(obj.id, first.revision) == first
    assert catalog.resolve(obj.id, first.revision[:8]) == first
    assert catalog.tags_of(first) == ["v1"]
    assert catalog.tags_of(second) == [LATEST]


def test_resolve_unknown_lists_tags(catalog):
    obj, _ = catalog.commit("b", "datasets", "x", new("one", tags=["prod"]))
    with pytest.raises(NotFound, match=r"no tag or revision 'nope'; tags are \['latest', 'prod'\]"):
        catalog.resolve(obj.id, "nope")
    with pytest.raises(NotFound):
        catalog.resolve(obj.id, "abc")  # too short to be a prefix
    with pytest.raises(NotFound):
        catalog.resolve(obj.id, "0000000")


def test_ambiguous_prefix(catalog):
    obj, rev = catalog.commit("b", "datasets", "x", new("0"))
    # a second revision sharing the first 6 characters, written straight into the table
    twin = rev.revision[:6] + ("0" if rev.revision[6] != "0" else "1") * 34
    with catalog.engine().begin() as conn:
        conn.execute(
            revisions.insert().values(
                object_id=obj.id,
                revision=twin,
                parent=rev.revision,
                base_id=None,
                kind="test.kind",
                kind_meta={},
                rows=None,
                size=0,
                created=rev.created,
            )
        )
    with pytest.raises(InvalidName, match="ambiguous"):
        catalog.resolve(obj.id, rev.revision[:6])
    assert catalog.resolve(obj.id, rev.revision).revision == rev.revision
    assert catalog.resolve(obj.id, twin[:7]).revision == twin


def test_set_tag_moves_and_remove_tag(catalog):
    obj, first = catalog.commit("b", "datasets", "x", new("one"))
    _, second = catalog.commit("b", "datasets", "x", new("two"))
    catalog.set_tag(obj.id, first, "prod")
    assert catalog.resolve(obj.id, "prod") == first
    catalog.set_tag(obj.id, second, "prod")
    assert catalog.resolve(obj.id, "prod") == second
    assert catalog.tags_of(first) == []
    assert catalog.tags_of(second) == [LATEST, "prod"]
    catalog.remove_tag(obj.id, "prod")
    with pytest.raises(NotFound):
        catalog.resolve(obj.id, "prod")


def test_revisions_oldest_first_with_tags(catalog):
    obj, first = catalog.commit("b", "datasets", "x", new("one", tags=["a", "b"]))
    _, second = catalog.commit("b", "datasets", "x", new("two"))
    _, third = catalog.commit("b", "datasets", "x", new("three", tags=["c"]))
    listed = catalog.revisions(obj.id)
    assert [r.revision for r, _ in listed] == [first.revision, second.revision, third.revision]
    assert [t for _, t in listed] == [["a", "b"], [], ["c", LATEST]]


def test_replace_holds_only_its_own_parts(catalog):
    catalog.commit("b", "datasets", "x", new("one", "two"))
    _, rev = catalog.commit("b", "datasets", "x", new("three"))
    assert [p.blob for p in catalog.parts(rev)] == [blob("three")]
    assert rev.size == 5
    assert rev.rows is None  # no part counted rows


def test_append_chain_reads_oldest_first(catalog):
    obj, r1 = catalog.commit("b", "datasets", "x", new("p1", rows=1, append=True))
    _, r2 = catalog.commit("b", "datasets", "x", new("p2", "p3", rows=2, append=True))
    _, r3 = catalog.commit("b", "datasets", "x", new("p4", rows=10, append=True))
    assert r2.base_id == r1.id
    assert r3.base_id == r2.id
    assert [p.blob for p in catalog.parts(r3)] == [blob(t) for t in ("p1", "p2", "p3", "p4")]
    assert [p.rows for p in catalog.parts(r3)] == [1, 2, 2, 10]
    assert r3.rows == 1 + 2 + 2 + 10
    assert r3.size == 8
    # older revisions still read as they were
    assert [p.blob for p in catalog.parts(r1)] == [blob("p1")]
    assert [p.blob for p in catalog.parts(r2)] == [blob(t) for t in ("p1", "p2", "p3")]
    assert catalog.resolve(obj.id).id == r3.id


def test_append_does_not_extend_another_kind(catalog):
    catalog.commit("b", "datasets", "x", new("p1", rows=1, append=True))
    _, rev = catalog.commit("b", "datasets", "x", new("p2", kind="other.kind", rows=1, append=True))
    assert rev.base_id is None
    assert [p.blob for p in catalog.parts(rev)] == [blob("p2")]
    assert rev.rows == 1
    assert catalog.get("b", "datasets", "x").kind == "other.kind"


def test_extend_runs_in_the_transaction_and_can_abort(catalog):
    obj, first = catalog.commit("b", "datasets", "x", new("p1", append=True))
    seen = []

    def extend(base):
        seen.append(base)
        return {"extended": base.revision}

    _, rev = catalog.commit(
        "b",
        "datasets",
        "x",
        NewRevision(kind="test.kind", kind_meta={}, parts=[part("p2")], append=True, extend=extend),
    )
    assert seen == [first]
    assert rev.kind_meta == {"extended": first.revision}

    def refuse(base):
        raise ValueError("does not fit")

    with pytest.raises(ValueError, match="does not fit"):
        catalog.commit(
            "b",
            "datasets",
            "x",
            NewRevision(
                kind="test.kind", kind_meta={}, parts=[part("p3")], append=True, extend=refuse
            ),
        )
    assert catalog.resolve(obj.id) == rev
    assert len(catalog.revisions(obj.id)) == 2
    assert catalog.blobs_in_use([blob("p3")]) == set()


def test_failed_first_commit_leaves_no_object(catalog):
    def refuse(base):
        raise ValueError("no")

    with pytest.raises(ValueError):
        catalog.commit(
            "b",
            "datasets",
            "x",
            NewRevision(kind="k", kind_meta={}, parts=[part("p")], extend=refuse),
        )
    assert catalog.find("b", "datasets", "x") is None
    assert count(catalog, objects) == 0


def test_attributes_merge_on_commit_and_set_attributes_replaces(catalog):
    catalog.commit("b", "datasets", "x", new("one", attributes={"a": 1, "b": 2}))
    obj, _ = catalog.commit("b", "datasets", "x", new("two", attributes={"b": 3, "c": [1, "x"]}))
    assert obj.attributes == {"a": 1, "b": 3, "c": [1, "x"]}
    assert obj.origin is None
    catalog.set_attributes(obj.id, {"only": {"nested": True}})
    updated = catalog.get("b", "datasets", "x")
    assert updated.attributes == {"only": {"nested": True}}
    assert updated.modified >= obj.modified
    origin = {"bucket": "dev", "name": "x", "revision": "abc"}
    catalog.commit("b", "datasets", "x", new("three", origin=origin))
    assert catalog.get("b", "datasets", "x").origin == origin


def test_list_sorted_with_pattern_and_kind(catalog):
    for name, kind in [("c", "k1"), ("a", "k2"), ("prod/b", "k1"), ("prod/a", "k2")]:
        catalog.commit("b", "datasets", name, new(name, kind=kind))
    assert [o.name for o in catalog.list("b", "datasets")] == ["a", "c", "prod/a", "prod/b"]
    assert [o.name for o in catalog.list("b", "datasets", pattern="prod/*")] == ["prod/a", "prod/b"]
    assert [o.name for o in catalog.list("b", "datasets", kind="k1")] == ["c", "prod/b"]
    assert [o.name for o in catalog.list("b", "datasets", pattern="prod/*", kind="k2")] == [
        "prod/a"
    ]
    assert catalog.list("b", "models") == []


def test_drop_removes_everything_and_returns_unused_blobs(catalog):
    obj, _ = catalog.commit("b", "datasets", "x", new("p1", append=True, tags=["v1"]))
    catalog.commit("b", "datasets", "x", new("p2", append=True))
    catalog.commit("b", "datasets", "keep", new("p2"))
    unused = catalog.drop(obj.id)
    assert unused == [blob("p1")]  # p2 is still used by 'keep'
    assert catalog.find("b", "datasets", "x") is None
    assert catalog.blobs_in_use([blob("p1"), blob("p2")]) == {blob("p2")}
    with catalog.engine().connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(revisions)
                .where(revisions.c.object_id == obj.id)
            ).scalar()
            == 0
        )
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(tags).where(tags.c.object_id == obj.id)
            ).scalar()
            == 0
        )
    assert count(catalog, parts) == 1
    assert catalog.blobs_in_use([]) == set()


def test_drop_then_recreate_starts_fresh(catalog):
    obj, _ = catalog.commit("b", "datasets", "x", new("p1", tags=["v1"]))
    catalog.drop(obj.id)
    obj2, rev = catalog.commit("b", "datasets", "x", new("p2"))
    assert rev.parent is None
    assert [t for _, t in catalog.revisions(obj2.id)] == [[LATEST]]


def test_a_stale_record_never_acts_on_a_new_object_that_got_its_id(catalog, catalog_url):
    """SQLite gives a dropped object's id (the highest) to the next new object."""
    old, _ = catalog.commit("b", "datasets", "x", new("p1", tags=["prod"]))
    catalog.drop(old)  # by someone else, say; we still hold `old`
    newer, _ = catalog.commit("b", "datasets", "y", new("p2", tags=["prod"]))
    if catalog_url.startswith("sqlite"):
        assert newer.id == old.id  # the reuse this guards against
    assert catalog.drop(old) == []
    catalog.set_attributes(old, {"stale": True})
    catalog.remove_tag(old, "prod")
    found = catalog.get("b", "datasets", "y")
    assert found.attributes == {}
    assert [t for _, t in catalog.revisions(found.id)] == [[LATEST, "prod"]]
    catalog.set_attributes(found, {"fresh": True})  # the record read now still works
    catalog.remove_tag(found, "prod")
    assert catalog.get("b", "datasets", "y").attributes == {"fresh": True}
    assert [t for _, t in catalog.revisions(found.id)] == [[LATEST]]
    assert catalog.drop(found) == [blob("p2")]


def test_a_second_catalog_on_the_same_url_sees_commits(catalog, catalog_url):
    catalog.commit("b", "datasets", "x", new("one"))
    other = Catalog(catalog_url)
    try:
        assert other.get("b", "datasets", "x").name == "x"
    finally:
        other.close()


def test_repr_hides_password():
    catalog = Catalog("postgresql://user:secret@localhost/db")
    assert "secret" not in repr(catalog)
    assert catalog.dialect == "postgresql"
    assert "psycopg" in catalog.url


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "oracle://x"])
def test_unsupported_urls_raise_config_error(url):
    with pytest.raises(ConfigError):
        Catalog(url)


def test_list_leaves_out_hidden_names_unless_asked(catalog):
    # '_' is a LIKE wildcard: only a leading underscore hides a name.
    for name in ("a", "_temp/upload", "_experiments/e1/model", "b/_draft", "c_d"):
        catalog.commit("b", "datasets", name, new(name))
    assert [o.name for o in catalog.list("b", "datasets")] == ["a", "b/_draft", "c_d"]
    assert sorted(o.name for o in catalog.list("b", "datasets", hidden=True)) == [
        "_experiments/e1/model",
        "_temp/upload",
        "a",
        "b/_draft",
        "c_d",
    ]
    assert [o.name for o in catalog.list("b", "datasets", pattern="_temp/*")] == []
    assert [o.name for o in catalog.list("b", "datasets", pattern="_temp/*", hidden=True)] == [
        "_temp/upload"
    ]
    assert [o.name for o in catalog.list("b", "datasets", kind="nope", hidden=True)] == []
