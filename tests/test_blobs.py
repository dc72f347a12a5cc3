import hashlib
import uuid

import pytest

from omops.blobs import Blobs
from omops.errors import ConfigError, NotFound, StorageError


def files_under(blobs, folder):
    root = f"{blobs.root}/{folder}"
    if not blobs.fs.exists(root):
        return []
    return [p for p in blobs.fs.find(root) if not blobs.fs.isdir(p)]


class BlobsContract:
    """What every blob store does, whatever filesystem is under it."""

    @pytest.fixture
    def blobs(self):
        raise NotImplementedError

    def test_key_is_the_sha256_of_the_content(self, blobs):
        key = blobs.put_bytes(b"hello")
        assert key == hashlib.sha256(b"hello").hexdigest()
        assert blobs.read(key) == b"hello"
        assert blobs.exists(key)

    def test_same_content_same_key_one_file(self, blobs):
        first = blobs.put_bytes(b"same")
        second = blobs.put_bytes(b"same")
        assert first == second
        assert len(files_under(blobs, "objects")) == 1

    def test_different_content_different_keys(self, blobs):
        assert blobs.put_bytes(b"a") != blobs.put_bytes(b"b")
        assert len(files_under(blobs, "objects")) == 2

    def test_empty_blob(self, blobs):
        key = blobs.put_bytes(b"")
        assert key == hashlib.sha256(b"").hexdigest()
        assert blobs.read(key) == b""

    def test_writer_hashes_and_counts_streamed_writes(self, blobs):
        with blobs.writer() as out:
            out.write(b"abc")
            out.write(memoryview(b"def"))
            assert out.tell() == 6
        assert out.size == 6
        assert out.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
        assert blobs.read(out.hexdigest()) == b"abcdef"

    def test_put_with_returns_key_and_size(self, blobs):
        key, size = blobs.put_with(lambda out: out.write(b"x" * 1000))
        assert size == 1000
        assert key == hashlib.sha256(b"x" * 1000).hexdigest()

    def test_no_tmp_file_left_after_a_write(self, blobs):
        blobs.put_bytes(b"data")
        assert files_under(blobs, "tmp") == []

    def test_exception_in_writer_leaves_no_blob_and_no_tmp(self, blobs):
        with pytest.raises(RuntimeError, match="boom"), blobs.writer() as out:
            out.write(b"partial data")
            raise RuntimeError("boom")
        assert files_under(blobs, "objects") == []
        assert files_under(blobs, "tmp") == []
        assert not blobs.exists(hashlib.sha256(b"partial data").hexdigest())

    def test_exception_in_put_with_leaves_nothing(self, blobs):
        def write(out):
            out.write(b"half")
            raise ValueError("serializer failed")

        with pytest.raises(ValueError, match="serializer failed"):
            blobs.put_with(write)
        assert files_under(blobs, "objects") == []
        assert files_under(blobs, "tmp") == []

    def test_keyboard_interrupt_also_cleans_up(self, blobs):
        with pytest.raises(KeyboardInterrupt), blobs.writer() as out:
            out.write(b"x")
            raise KeyboardInterrupt
        assert files_under(blobs, "tmp") == []
        assert files_under(blobs, "objects") == []

    def test_large_streamed_write(self, blobs):
        chunk = bytes(range(256)) * 64  # 16 KiB; 3 MiB in all, written in small pieces
        digest = hashlib.sha256()
        with blobs.writer() as out:
            for _ in range(192):
                out.write(chunk)
                digest.update(chunk)
        assert out.size == 192 * len(chunk)
        assert out.hexdigest() == digest.hexdigest()
        assert blobs.read(out.hexdigest()) == chunk * 192
        assert files_under(blobs, "tmp") == []

    def test_exception_after_a_large_write_leaves_nothing(self, blobs):
        with pytest.raises(RuntimeError, match="late"), blobs.writer() as out:
            for _ in range(200):
                out.write(b"x" * 16384)
            raise RuntimeError("late")
        assert files_under(blobs, "objects") == []
        assert files_under(blobs, "tmp") == []

    def test_open_streams_the_blob(self, blobs):
        key = blobs.put_bytes(b"0123456789")
        with blobs.open(key) as fh:
            assert fh.read(4) == b"0123"
            assert fh.read() == b"456789"

    def test_missing_blob_raises_storage_error(self, blobs):
        """The object exists in the catalog, its bytes do not: a damaged store, not a 404."""
        key = hashlib.sha256(b"never stored").hexdigest()
        assert not blobs.exists(key)
        with pytest.raises(StorageError, match=key) as caught:
            blobs.read(key)
        assert not isinstance(caught.value, NotFound)
        assert "restore the blob from a backup" in str(caught.value)

    def test_intact_checks_the_content_hash(self, blobs):
        key = blobs.put_bytes(b"kept safe")
        assert blobs.intact(key)
        assert not blobs.intact(hashlib.sha256(b"never stored").hexdigest())

    def test_delete_removes_and_tolerates_missing(self, blobs):
        key = blobs.put_bytes(b"bye")
        blobs.delete(key)
        assert not blobs.exists(key)
        blobs.delete(key)  # a missing blob is not an error
        assert files_under(blobs, "objects") == []

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "abc",
            "../" * 30,
            "../../etc/passwd",
            "A" * 64,  # upper case is not what sha256 hexdigest gives
            "g" * 64,
            "0" * 63,
            "0" * 65,
            "/" + "0" * 63,
            "0" * 62 + "/x",
            "0" * 63 + "\0",
        ],
    )
    def test_keys_that_are_not_hashes_are_refused(self, blobs, key):
        with pytest.raises(StorageError, match="not a SHA-256"):
            blobs.path(key)
        with pytest.raises(StorageError):
            blobs.read(key)
        with pytest.raises(StorageError):
            blobs.exists(key)
        with pytest.raises(StorageError):
            blobs.delete(key)

    def test_copy_from_another_store(self, blobs, tmp_path):
        other = Blobs(str(tmp_path / "other"))
        key = other.put_bytes(b"promoted")
        assert not blobs.exists(key)
        blobs.copy_from(other, key)
        assert blobs.read(key) == b"promoted"
        assert other.read(key) == b"promoted"
        blobs.copy_from(other, key)  # already there: a no-op
        assert blobs.read(key) == b"promoted"

    def test_copy_from_refuses_a_corrupt_source(self, blobs, tmp_path):
        other = Blobs(str(tmp_path / "other"))
        key = other.put_bytes(b"original")
        with open(other.path(key), "wb") as fh:
            fh.write(b"tampered")
        with pytest.raises(StorageError, match="does not match its hash"):
            blobs.copy_from(other, key)
        assert blobs.read(hashlib.sha256(b"tampered").hexdigest()) == b"tampered"
        assert not blobs.exists(key)

    def test_copy_from_missing_source_raises_storage_error(self, blobs, tmp_path):
        other = Blobs(str(tmp_path / "other"))
        with pytest.raises(StorageError, match="missing"):
            blobs.copy_from(other, hashlib.sha256(b"nothing").hexdigest())
        assert files_under(blobs, "tmp") == []


class TestLocalBlobs(BlobsContract):
    @pytest.fixture
    def blobs(self, tmp_path):
        return Blobs(str(tmp_path / "blobs"))

    def test_is_local_and_paths_are_under_root(self, blobs, tmp_path):
        key = blobs.put_bytes(b"x")
        assert blobs.is_local
        path = blobs.path(key)
        assert path.startswith(str(tmp_path / "blobs" / "objects"))
        assert path.endswith(f"/{key[:2]}/{key[2:]}")
        assert blobs.url_of(key) == path

    def test_file_url(self, tmp_path):
        blobs = Blobs(f"file://{tmp_path / 'b'}")
        key = blobs.put_bytes(b"via file url")
        assert (tmp_path / "b" / "objects" / key[:2] / key[2:]).read_bytes() == b"via file url"


class TestMemoryBlobs(BlobsContract):
    @pytest.fixture
    def blobs(self):
        store = Blobs(f"memory://omops-test-{uuid.uuid4().hex}")
        yield store
        if store.fs.exists(store.root):
            store.fs.rm(store.root, recursive=True)

    def test_url_of_keeps_the_protocol(self, blobs):
        key = blobs.put_bytes(b"x")
        assert not blobs.is_local
        assert blobs.url_of(key).startswith("memory://")
        assert blobs.url_of(key).endswith(key[2:])

    def test_copy_between_memory_and_local(self, blobs, tmp_path):
        local = Blobs(str(tmp_path / "local"))
        key = blobs.put_bytes(b"across filesystems")
        local.copy_from(blobs, key)
        assert local.read(key) == b"across filesystems"


def test_unknown_protocol_raises_config_error():
    with pytest.raises(ConfigError, match="nosuchproto"):
        Blobs("nosuchproto://x")
