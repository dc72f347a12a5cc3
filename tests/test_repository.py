import datetime as dt
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from omops.catalog._tables import objects, parts, revisions, tags
from omops.errors import InvalidData, InvalidName, InvalidQuery, NotFound, PluginError
from omops.omega import Omega
from omops.repository import STORES, Metadata


def frame(start, n=3):
    return pd.DataFrame(
        {"x": range(start, start + n), "y": [float(i) / 2 for i in range(n)]},
        index=pd.RangeIndex(start, start + n),
    )


def blob_files(om):
    folder = f"{om.blobs.root}/objects"
    return sorted(om.blobs.fs.find(folder)) if om.blobs.fs.exists(folder) else []


def any_files(folder):
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def row_counts(om):
    with om.catalog.engine().connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (objects, revisions, tags, parts)
        }


# -- put / get --------------------------------------------------------------------------


def test_put_appends_by_default(om):
    first = om.datasets.put(frame(0), "df")
    second = om.datasets.put(frame(3), "df")
    assert first.rows == 3
    assert second.rows == 6
    pd.testing.assert_frame_equal(om.datasets.get("df"), pd.concat([frame(0), frame(3)]))
    om.datasets.put(frame(0), "explicit", append=True)
    om.datasets.put(frame(3), "explicit", append=True)
    assert len(om.datasets.get("explicit")) == 6


def test_put_append_false_replaces(om):
    om.datasets.put(frame(0), "df")
    meta = om.datasets.put(frame(10), "df", append=False)
    assert meta.rows == 3
    pd.testing.assert_frame_equal(om.datasets.get("df"), frame(10))


def test_append_to_another_kind_replaces(om):
    om.datasets.put({"a": 1}, "thing")
    meta = om.datasets.put(frame(0), "thing")
    assert meta.kind == "pandas.dataframe"
    assert meta.rows == 3
    pd.testing.assert_frame_equal(om.datasets.get("thing"), frame(0))


def test_other_kinds_replace(om):
    om.datasets.put({"v": 1}, "conf")
    om.datasets.put({"v": 2}, "conf")
    assert om.datasets.get("conf") == {"v": 2}
    with pytest.raises(InvalidData, match="cannot be appended"):
        om.datasets.put({"v": 3}, "conf", append=True)
    assert om.datasets.get("conf") == {"v": 2}


def test_missing_names_raise_not_found(om):
    with pytest.raises(NotFound, match="'nope' does not exist") as info:
        om.datasets.get("nope")
    assert "om.datasets.list()" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(NotFound):
        om.datasets.metadata("nope")
    with pytest.raises(NotFound):
        om.datasets.revisions("nope")
    with pytest.raises(NotFound, match="'nope' does not exist"):
        om.datasets.drop("nope")
    assert om.datasets.drop("nope", force=True) is False


def test_stores_are_separate(om):
    om.datasets.put({"a": 1}, "same")
    om.models.put({"b": 2}, "same")
    assert om.datasets.get("same") == {"a": 1}
    assert om.models.get("same") == {"b": 2}
    assert om.jobs.list() == []
    assert set(STORES) == {"datasets", "models", "jobs", "scripts", "streams"}


def test_unsupported_object_is_refused_before_anything_is_written(om, tmp_path):
    with pytest.raises(PluginError):
        om.datasets.put(object(), "x")
    assert om.datasets.list() == []
    assert any_files(tmp_path / "blobs" / "objects") == []


def test_failed_append_leaves_the_dataset_and_blobs_alone(om):
    om.datasets.put(frame(0), "df")
    before = blob_files(om)
    with pytest.raises(InvalidData, match="cannot append"):
        om.datasets.put(pd.DataFrame({"other": [1]}), "df")
    assert blob_files(om) == before
    assert len(om.datasets.revisions("df")) == 1
    pd.testing.assert_frame_equal(om.datasets.get("df"), frame(0))


# -- metadata ---------------------------------------------------------------------------


def test_metadata_fields(om):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    put = om.datasets.put(frame(0), "df", {"owner": "ann"}, tag="v1")
    meta = om.datasets.metadata("df")
    assert isinstance(meta, Metadata)
    assert (meta.name, meta.bucket, meta.store) == ("df", "default", "datasets")
    assert meta.kind == "pandas.dataframe"
    assert meta.revision == put.revision
    assert len(meta.revision) == 40
    assert meta.tags == ["latest", "v1"] == put.tags
    assert before <= meta.created <= meta.modified
    assert meta.created.tzinfo is not None
    assert meta.attributes == {"owner": "ann"}
    assert meta.rows == 3
    assert meta.columns == ["x", "y"]
    assert meta.size > 0
    assert meta.size == sum(p.stat().st_size for p in map(_path, blob_files(om)))
    assert meta.origin is None
    assert meta.details["dtypes"] == {"x": "int64", "y": "double"}
    as_dict = meta.to_dict()
    assert as_dict["created"] == meta.created.isoformat()
    assert as_dict["columns"] == ["x", "y"]
    assert "kind_meta" not in as_dict


def _path(path):
    from pathlib import Path

    return Path(path)


def test_metadata_after_more_puts(om):
    first = om.datasets.put(frame(0), "df")
    time.sleep(0.01)
    second = om.datasets.put(frame(3), "df")
    meta = om.datasets.metadata("df")
    assert meta.revision == second.revision != first.revision
    assert meta.created == first.created
    assert meta.modified > first.modified
    assert meta.rows == 6
    assert meta.size > first.size
    old = om.datasets.metadata(f"df@{first.revision[:6]}")
    assert old.revision == first.revision
    assert old.rows == 3
    assert old.tags == []


def test_metadata_of_other_kinds(om):
    meta = om.models.put({"a": 1}, "conf")
    assert meta.kind == "python.json"
    assert meta.rows is None
    assert meta.columns is None
    arr = om.datasets.put(np.zeros((2, 3)), "arr")
    assert arr.details == {"shape": [2, 3], "dtype": "float64"}
    assert arr.columns is None


def test_attributes_are_editable_and_persisted(om):
    om.datasets.put(frame(0), "df", {"a": 1})
    meta = om.datasets.metadata("df")
    meta.attributes["owner"] = "bob"
    meta.attributes["nested"] = {"list": [1, 2]}
    time.sleep(0.01)
    assert meta.save() is meta
    again = om.datasets.metadata("df")
    assert again.attributes == {"a": 1, "owner": "bob", "nested": {"list": [1, 2]}}
    assert again.modified > meta.modified
    # a later put merges its attributes into the saved ones
    om.datasets.put(frame(3), "df", {"a": 2})
    assert om.datasets.metadata("df").attributes == {
        "a": 2,
        "owner": "bob",
        "nested": {"list": [1, 2]},
    }
    # a fresh instance on the same catalog sees them
    other = Omega(catalog=om.catalog.url, blobs=om.blobs.url)
    try:
        assert other.datasets.metadata("df").attributes["owner"] == "bob"
    finally:
        other.catalog.close()


def test_attributes_can_be_removed_and_are_checked(om):
    om.datasets.put(frame(0), "df", {"a": 1, "b": 2})
    meta = om.datasets.metadata("df")
    del meta.attributes["a"]
    meta.save()
    assert om.datasets.metadata("df").attributes == {"b": 2}
    with pytest.raises(InvalidData, match="must be a dict"):
        om.datasets.set_attributes("df", ["not", "a", "dict"])
    with pytest.raises(NotFound):
        om.datasets.set_attributes("nope", {})
    meta = om.datasets.put(frame(0), "df")
    unbound = Metadata(**{**meta.__dict__, "_repository": None})
    with pytest.raises(InvalidData, match="not bound"):
        unbound.save()


# -- list / exists / drop ---------------------------------------------------------------


def test_list_with_pattern_and_kind(om):
    om.datasets.put(frame(0), "sales")
    om.datasets.put({"a": 1}, "prod/conf")
    om.datasets.put(frame(0), "prod/sales")
    om.datasets.put(np.arange(3), "arr")
    om.models.put({"m": 1}, "model")
    assert om.datasets.list() == ["arr", "prod/conf", "prod/sales", "sales"]
    assert om.datasets.list("prod/*") == ["prod/conf", "prod/sales"]
    assert om.datasets.list(pattern="*sales") == ["prod/sales", "sales"]
    assert om.datasets.list(kind="pandas.dataframe") == ["prod/sales", "sales"]
    assert om.datasets.list("prod/*", kind="python.json") == ["prod/conf"]
    assert om.datasets.list("nothing*") == []
    assert om.models.list() == ["model"]


def test_list_hides_internal_names_unless_asked(om):
    om.datasets.put(frame(0), "sales")
    om.datasets.put(frame(0), "_temp/3f2a")
    om.datasets.put({"a": 1}, "_experiments/exp/1/train")
    om.datasets.put({"a": 2}, "prod/_draft")  # only the first segment counts
    om.models.put({"m": 1}, "_experiments/exp/1/clf")
    assert om.datasets.list() == ["prod/_draft", "sales"]
    assert om.datasets.list(hidden=True) == [
        "_experiments/exp/1/train",
        "_temp/3f2a",
        "prod/_draft",
        "sales",
    ]
    assert om.datasets.list("_temp/*") == []
    assert om.datasets.list("_temp/*", hidden=True) == ["_temp/3f2a"]
    assert om.datasets.list(kind="python.json", hidden=True) == [
        "_experiments/exp/1/train",
        "prod/_draft",
    ]
    assert om.models.list() == []
    assert om.models.list(hidden=True) == ["_experiments/exp/1/clf"]


def test_internal_names_are_read_like_any_other(om):
    meta = om.datasets.put(frame(0), "_temp/3f2a", tag="v1")
    assert om.datasets.exists("_temp/3f2a") and om.datasets.exists("_temp/3f2a@v1")
    pd.testing.assert_frame_equal(om.datasets.get("_temp/3f2a"), frame(0))
    assert om.datasets.metadata("_temp/3f2a").revision == meta.revision
    assert om.datasets.revisions("_temp/3f2a") == [(meta.revision, ["latest", "v1"])]
    assert om.datasets.drop("_temp/3f2a")
    assert om.datasets.list(hidden=True) == []


def test_experiment_artifacts_stay_out_of_listings(om):
    with om.runtime.experiment("exp") as exp:
        exp.log_artifact(frame(0), "train")
    assert om.datasets.list() == []
    assert om.datasets.list(hidden=True) == ["_experiments/exp/1/train"]
    pd.testing.assert_frame_equal(exp.restore_artifact("train"), frame(0))


def test_omega_ml_style_tag_reference_points_to_at(om):
    om.models.put({"C": 1}, "forecast", tag="testing")
    for call in (om.models.get, om.models.metadata, om.models.exists):
        with pytest.raises(InvalidName, match=r"for a tag or revision write name@tag"):
            call("forecast#testing")
    assert om.models.get("forecast@testing") == {"C": 1}


def test_exists(om):
    meta = om.datasets.put(frame(0), "df", tag="v1")
    assert om.datasets.exists("df")
    assert om.datasets.exists("df@v1")
    assert om.datasets.exists(f"df@{meta.revision[:6]}")
    assert not om.datasets.exists("df@v2")
    assert not om.datasets.exists("nope")
    assert not om.datasets.exists("nope@v1")
    assert not om.models.exists("df")


def test_drop(om, tmp_path):
    om.datasets.put(frame(0), "df")
    om.datasets.put(frame(3), "df")
    om.datasets.put({"keep": True}, "other")
    assert len(blob_files(om)) == 3
    assert om.datasets.drop("df") is True
    assert not om.datasets.exists("df")
    assert om.datasets.list() == ["other"]
    assert len(blob_files(om)) == 1  # the dataset's parts are gone, 'other' stays
    with pytest.raises(NotFound):
        om.datasets.get("df")
    assert om.datasets.get("other") == {"keep": True}


def test_drop_then_put_again_starts_a_new_history(om):
    om.datasets.put(frame(0), "df", tag="v1")
    om.datasets.drop("df")
    om.datasets.put(frame(10), "df")
    assert [tags for _, tags in om.datasets.revisions("df")] == [["latest"]]
    pd.testing.assert_frame_equal(om.datasets.get("df"), frame(10))


def test_drop_keeps_blobs_shared_with_other_objects(om):
    om.datasets.put(frame(0), "a")
    om.datasets.put(frame(0), "b")  # same bytes, same blob
    assert len(blob_files(om)) == 1
    om.datasets.drop("a")
    assert len(blob_files(om)) == 1
    pd.testing.assert_frame_equal(om.datasets.get("b"), frame(0))


# -- revisions and tags -----------------------------------------------------------------


def test_revisions_oldest_first_with_tags(om):
    r1 = om.datasets.put({"v": 1}, "x", tag=["testing", "v1"]).revision
    r2 = om.datasets.put({"v": 2}, "x").revision
    r3 = om.datasets.put({"v": 3}, "x", tag="v3").revision
    assert om.datasets.revisions("x") == [
        (r1, ["testing", "v1"]),
        (r2, []),
        (r3, ["latest", "v3"]),
    ]
    assert om.datasets.revisions("x@v1") == om.datasets.revisions("x")


def test_get_by_tag_prefix_and_revision(om):
    r1 = om.datasets.put({"v": 1}, "x", tag="testing").revision
    r2 = om.datasets.put({"v": 2}, "x").revision
    om.datasets.put({"v": 3}, "x")
    assert om.datasets.get("x") == {"v": 3}
    assert om.datasets.get("x@latest") == {"v": 3}
    assert om.datasets.get("x@testing") == {"v": 1}
    assert om.datasets.get(f"x@{r2[:6]}") == {"v": 2}
    assert om.datasets.get("x", revision=r1) == {"v": 1}
    assert om.datasets.get("x", revision=r2[:6]) == {"v": 2}
    assert om.datasets.get("x", revision="testing") == {"v": 1}
    with pytest.raises(InvalidName, match="names a revision already"):
        om.datasets.get("x@testing", revision=r2)
    with pytest.raises(NotFound, match="no tag or revision 'nope'"):
        om.datasets.get("x@nope")
    with pytest.raises(NotFound):
        om.datasets.get("x", revision="ffffff")


def test_caret_names_earlier_revisions_everywhere(om):
    """omega-ml's ``name^``: the revision before the latest, ``^^`` the one before that."""
    first = om.models.put({"v": 1}, "m", tag="commit1").revision
    second = om.models.put({"v": 2}, "m", tag="commit2").revision
    om.models.put({"v": 3}, "m")
    assert om.models.get("m^") == {"v": 2}
    assert om.models.get("m^^") == {"v": 1}
    assert om.models.get("m@commit2^") == {"v": 1}
    assert om.models.get("m", revision="^^") == {"v": 1}
    assert om.models.metadata("m^").revision == second
    assert om.models.exists("m^^") and not om.models.exists("m^^^")
    om.models.tag("m", "^^", "first")
    assert om.models.metadata("m@first").revision == first
    with pytest.raises(NotFound, match=r"3 revision\(s\) before .* which has 2 before it"):
        om.models.get("m^^^")
    with pytest.raises(NotFound, match=r"before .* which has 0 before it"):
        om.models.get("m@commit1^")


def test_caret_reads_the_older_dataset_with_its_columns(om):
    om.datasets.put(frame(0), "df", append=False)
    om.datasets.put(frame(10), "df", append=False)
    pd.testing.assert_frame_equal(om.datasets.get("df^[x]"), frame(0)[["x"]])
    assert list(om.datasets.get("df[x]")["x"]) == [10, 11, 12]


def test_tag_and_untag(om):
    r1 = om.datasets.put({"v": 1}, "x").revision
    r2 = om.datasets.put({"v": 2}, "x").revision
    om.datasets.tag("x", r1[:6], "prod")
    assert om.datasets.get("x@prod") == {"v": 1}
    om.datasets.tag("x", "latest", "prod")  # moves it
    assert om.datasets.get("x@prod") == {"v": 2}
    om.datasets.tag("x", "prod", "stable")  # a tag can name the revision
    assert dict(om.datasets.revisions("x"))[r2] == ["latest", "prod", "stable"]
    assert dict(om.datasets.revisions("x"))[r1] == []
    om.datasets.untag("x", "prod")
    assert not om.datasets.exists("x@prod")
    assert om.datasets.get("x@stable") == {"v": 2}
    with pytest.raises(NotFound):
        om.datasets.untag("x", "prod")
    with pytest.raises(InvalidName, match="'latest' cannot be removed"):
        om.datasets.untag("x", "latest")
    with pytest.raises(InvalidName, match="invalid tag"):
        om.datasets.tag("x", r1, "bad/tag")
    with pytest.raises(NotFound):
        om.datasets.tag("x", "nope", "t")
    with pytest.raises(NotFound):
        om.datasets.tag("missing", "latest", "t")


def test_tags_are_listed_once_and_latest_moves(om):
    meta = om.datasets.put({"v": 1}, "x", tag=["v1", "v1", "latest"])
    assert meta.tags == ["latest", "v1"]
    assert om.datasets.metadata("x").tags == ["latest", "v1"]
    assert om.datasets.revisions("x") == [(meta.revision, ["latest", "v1"])]
    # latest moves on every put, past any tag
    om.datasets.put({"v": 1}, "x", tag="pinned")
    om.datasets.put({"v": 2}, "x")
    assert om.datasets.metadata("x").tags == ["latest"]
    assert om.datasets.metadata("x@pinned").tags == ["pinned"]


def test_older_dataset_revisions_stay_readable(om):
    a, b, c, d = frame(0), frame(3), frame(100), frame(200)
    r1 = om.datasets.put(a, "df").revision
    r2 = om.datasets.put(b, "df").revision
    r3 = om.datasets.put(c, "df", append=False).revision
    r4 = om.datasets.put(d, "df").revision
    reads = {
        r1: a,
        r2: pd.concat([a, b]),
        r3: c,
        r4: pd.concat([c, d]),
    }
    for revision, want in reads.items():
        pd.testing.assert_frame_equal(om.datasets.get("df", revision=revision), want)
        pd.testing.assert_frame_equal(
            om.datasets.get(f"df@{revision[:6]}", x__gte=3), want[want.x >= 3]
        )
    assert [om.datasets.metadata(f"df@{r}").rows for r in reads] == [3, 6, 3, 6]
    pd.testing.assert_frame_equal(om.datasets.get("df"), reads[r4])


def test_column_selection_by_reference_and_argument(om):
    om.datasets.put(frame(0), "df")
    pd.testing.assert_frame_equal(om.datasets.get("df[y]"), frame(0)[["y"]])
    pd.testing.assert_frame_equal(om.datasets.get("df[^y]"), frame(0)[["x"]])
    pd.testing.assert_frame_equal(om.datasets.get("df", columns=["y", "x"]), frame(0)[["y", "x"]])
    with pytest.raises(InvalidQuery, match="selects columns already"):
        om.datasets.get("df[y]", columns=["x"])
    with pytest.raises(InvalidQuery, match=r"unknown column\(s\) \['z'\]"):
        om.datasets.get("df[z]")


# -- buckets ----------------------------------------------------------------------------


def test_buckets_are_isolated(om):
    dev, prod = om["dev"], om["prod"]
    assert (dev.bucket, prod.bucket, om.bucket) == ("dev", "prod", "default")
    dev.datasets.put({"env": "dev"}, "conf")
    prod.datasets.put({"env": "prod"}, "conf")
    assert dev.datasets.get("conf") == {"env": "dev"}
    assert prod.datasets.get("conf") == {"env": "prod"}
    assert om.datasets.list() == []
    assert not om.datasets.exists("conf")
    dev.datasets.drop("conf")
    assert prod.datasets.get("conf") == {"env": "prod"}
    assert om["dev"].datasets.list() == []


# -- promote ----------------------------------------------------------------------------


def test_promote_to_another_bucket(om):
    dev, prod = om["dev"], om["prod"]
    source = dev.datasets.put(frame(0), "df", {"owner": "ann"})
    dev.datasets.put(frame(3), "df")
    promoted = dev.datasets.promote("df", prod.datasets)
    assert promoted.bucket == "prod"
    assert promoted.name == "df"
    assert promoted.rows == 6
    assert promoted.attributes == {"owner": "ann"}
    pd.testing.assert_frame_equal(prod.datasets.get("df"), dev.datasets.get("df"))
    origin = prod.datasets.metadata("df").origin
    assert origin["bucket"] == "dev"
    assert origin["store"] == "datasets"
    assert origin["name"] == "df"
    assert origin["revision"] == dev.datasets.metadata("df").revision != source.revision
    assert "promoted" in origin
    assert dev.datasets.metadata("df").origin is None


def test_promote_with_asname_and_a_revision(om):
    dev, prod = om["dev"], om["prod"]
    first = dev.datasets.put(frame(0), "df", tag="v1")
    dev.datasets.put(frame(3), "df")
    meta = dev.datasets.promote("df@v1", prod.datasets, asname="release/df")
    assert meta.name == "release/df"
    assert prod.datasets.list() == ["release/df"]
    pd.testing.assert_frame_equal(prod.datasets.get("release/df"), frame(0))
    assert prod.datasets.metadata("release/df").origin["revision"] == first.revision


def test_promote_a_model_and_into_the_wrong_store(om):
    om["dev"].models.put({"m": 1}, "conf")
    om["dev"].models.promote("conf", om["prod"].models)
    assert om["prod"].models.get("conf") == {"m": 1}
    om.datasets.put(frame(0), "df")
    with pytest.raises(PluginError, match="cannot be stored in models"):
        om.datasets.promote("df", om.models)
    assert om.models.list() == []


def test_promote_refuses_bad_names(om):
    om.datasets.put(frame(0), "df")
    with pytest.raises(InvalidName, match="not a column selector"):
        om.datasets.promote("df[x]", om["prod"].datasets)
    with pytest.raises(InvalidName):
        om.datasets.promote("df", om["prod"].datasets, asname="../escape")
    with pytest.raises(InvalidName):  # not silently the source's name
        om.datasets.promote("df", om["prod"].datasets, asname="")
    with pytest.raises(NotFound):
        om.datasets.promote("nope", om["prod"].datasets)
    assert om["prod"].datasets.list() == []


def test_dropping_a_promoted_copy_keeps_the_original(om):
    dev, prod = om["dev"], om["prod"]
    dev.datasets.put(frame(0), "df")
    dev.datasets.put(frame(3), "df")
    dev.datasets.promote("df", prod.datasets)
    files = blob_files(om)
    assert len(files) == 2  # one blob store: the copy shares the parts
    prod.datasets.drop("df")
    assert blob_files(om) == files
    pd.testing.assert_frame_equal(dev.datasets.get("df"), pd.concat([frame(0), frame(3)]))
    # and the other way round
    dev.datasets.promote("df", prod.datasets)
    dev.datasets.drop("df")
    pd.testing.assert_frame_equal(prod.datasets.get("df"), pd.concat([frame(0), frame(3)]))
    prod.datasets.drop("df")
    assert blob_files(om) == []
    # appending to a promoted copy leaves the original alone
    om["dev"].datasets.put(frame(0), "df")
    om["dev"].datasets.promote("df", om["prod"].datasets)
    om["prod"].datasets.put(frame(3), "df")
    assert len(om["prod"].datasets.get("df")) == 6
    pd.testing.assert_frame_equal(om["dev"].datasets.get("df"), frame(0))


def test_promote_to_another_instance_copies_blobs(om, tmp_path):
    other = Omega(catalog=f"sqlite:///{tmp_path / 'other.sqlite'}", blobs=str(tmp_path / "other"))
    try:
        om.datasets.put(frame(0), "df")
        om.datasets.put(frame(3), "df")
        om.models.put({"m": 1}, "conf")
        assert any_files(tmp_path / "other") == []
        meta = om.datasets.promote("df", other.datasets)
        om.models.promote("conf", other.models, asname="prod/conf")
        assert len(any_files(tmp_path / "other" / "objects")) == 3
        assert meta.origin["catalog"] == repr(om.catalog)
        want = pd.concat([frame(0), frame(3)])
        pd.testing.assert_frame_equal(other.datasets.get("df"), want)
        assert other.models.get("prod/conf") == {"m": 1}
        # the copy no longer needs the source
        om.datasets.drop("df")
        om.models.drop("conf")
        assert blob_files(om) == []
        pd.testing.assert_frame_equal(other.datasets.get("df"), want)
        assert other.models.get("prod/conf") == {"m": 1}
        # promoting again is idempotent on blobs and adds a revision
        om.datasets.put(frame(0), "df")
        other_meta = om.datasets.promote("df", other.datasets)
        assert len(other.datasets.revisions("df")) == 2
        assert other_meta.rows == 3
    finally:
        other.catalog.close()


def test_a_blob_store_on_memory(catalog_url):
    om = Omega(catalog=catalog_url, blobs=f"memory://omops-repo-{uuid.uuid4().hex}")
    try:
        om.datasets.put(frame(0), "df")
        om.datasets.put(frame(3), "df")
        om.models.put({"m": 1}, "conf")
        want = pd.concat([frame(0), frame(3)])
        pd.testing.assert_frame_equal(om.datasets.get("df"), want)
        pd.testing.assert_frame_equal(om.datasets.get("df[y]"), want[["y"]])
        assert om.models.get("conf") == {"m": 1}
        om.datasets.drop("df")
        assert len(blob_files(om)) == 1
    finally:
        om.blobs.fs.rm(om.blobs.root, recursive=True)
        om.catalog.close()


# -- hostile names: refused before any I/O ------------------------------------------------

HOSTILE = [
    "..",
    "../escape",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a/../../b",
    "a\0b",
    "x" * 5000,
    "a\\b",
    "..\\..\\x",
    " ",
    "\t",
    "a/",
    ".",
    "",
]
NOT_STR = [None, 1, b"bytes", ["a"], object()]


@pytest.fixture
def fresh(tmp_path):
    """An instance nothing has touched yet: its catalog file and blob folder do not exist."""
    om = Omega(
        catalog=f"sqlite:///{tmp_path / 'fresh' / 'c.sqlite'}",
        blobs=str(tmp_path / "fresh" / "blobs"),
    )
    yield om
    om.catalog.close()


@pytest.mark.parametrize("bucket", ["", "a/b", "..", ".", "x" * 65, "a b", None, 3])
def test_invalid_buckets(fresh, bucket):
    with pytest.raises(InvalidName, match="invalid bucket"):
        fresh[bucket]


def _calls(om, name):
    df = frame(0)
    return {
        "put": lambda: om.datasets.put(df, name),
        "put_model": lambda: om.models.put({"a": 1}, name, kind="python.pickle"),
        "get": lambda: om.datasets.get(name),
        "get_ref": lambda: (
            om.datasets.get(f"{name}@latest") if isinstance(name, str) else om.datasets.get(name)
        ),
        "drop": lambda: om.datasets.drop(name),
        "drop_force": lambda: om.datasets.drop(name, force=True),
        "metadata": lambda: om.datasets.metadata(name),
        "exists": lambda: om.datasets.exists(name),
        "revisions": lambda: om.datasets.revisions(name),
        "tag": lambda: om.datasets.tag(name, "latest", "t"),
        "set_attributes": lambda: om.datasets.set_attributes(name, {}),
    }


@pytest.mark.parametrize("name", HOSTILE + NOT_STR, ids=lambda n: repr(n)[:20])
def test_hostile_names_do_no_io(fresh, tmp_path, name):
    for verb, call in _calls(fresh, name).items():
        with pytest.raises(InvalidName):
            call()
        assert not (tmp_path / "fresh").exists(), f"{verb}({name!r}) touched the disk"


def test_hostile_names_write_nothing(om, tmp_path):
    om.datasets.put(frame(0), "good")  # the catalog exists and holds one object
    before = row_counts(om)
    files_before = any_files(tmp_path)
    for name in ["../x", "/abs", "a//b", "a\0b", "x" * 5000, "a\\b", " "]:
        for call in _calls(om, name).values():
            with pytest.raises(InvalidName):
                call()
        with pytest.raises(InvalidName):
            om.datasets.promote("good", om["prod"].datasets, asname=name)
        with pytest.raises(InvalidName):
            om.datasets.put(frame(0), "good", tag=name)
    assert row_counts(om) == before
    assert any_files(tmp_path) == files_before
    assert om.datasets.list() == ["good"]
    assert om["prod"].datasets.list() == []


def test_hostile_names_on_an_empty_catalog(om, tmp_path):
    for name in ["../x", "/abs", "a//b", "a\0b", "x" * 5000]:
        for call in _calls(om, name).values():
            with pytest.raises(InvalidName):
                call()
    assert set(row_counts(om).values()) == {0}
    assert any_files(tmp_path / "blobs") == []


@pytest.mark.parametrize("revision", ["../etc", "", "a/b", "x" * 100, "a b", 5, b"ab12"])
def test_bad_revision_arguments_do_no_io(fresh, tmp_path, revision):
    with pytest.raises(InvalidName, match="invalid tag"):
        fresh.datasets.get("x", revision=revision)
    with pytest.raises(InvalidName, match="invalid tag"):
        fresh.datasets.tag("x", revision, "t")
    with pytest.raises(InvalidName, match="invalid tag"):
        fresh.datasets.tag("x", "latest", revision)
    with pytest.raises(InvalidName, match="invalid tag"):
        fresh.datasets.untag("x", revision)
    with pytest.raises(InvalidName, match="invalid tag"):
        fresh.datasets.put({"a": 1}, "x", tag=revision)
    assert not (tmp_path / "fresh").exists()
