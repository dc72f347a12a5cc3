"""HashingWriter in background mode: bytes, order, hash and errors as in the serial mode."""

import hashlib
import io
import random
import threading

import pytest

from omops.blobs import Blobs, HashingWriter


def pieces(seed, count=60):
    rng = random.Random(seed)
    sizes = [rng.choice([1, 4, 100, 4096, 300_000, 1_048_576, 2_500_000]) for _ in range(count)]
    return [rng.randbytes(n) for n in sizes]


@pytest.mark.parametrize("background", [False, True])
def test_bytes_hash_and_size_match_the_input(background):
    raw = io.BytesIO()
    out = HashingWriter(raw, background=background)
    data = pieces(1)
    for chunk in data:
        assert out.write(chunk) == len(chunk)
    out.finish()
    whole = b"".join(data)
    assert raw.getvalue() == whole
    assert out.size == out.tell() == len(whole)
    assert out.hexdigest() == hashlib.sha256(whole).hexdigest()


def test_reused_mutable_buffers_are_copied():
    raw = io.BytesIO()
    out = HashingWriter(raw, background=True)
    buffer = bytearray(2_000_000)
    expected = b""
    for value in range(1, 6):
        buffer[:] = bytes([value]) * len(buffer)
        out.write(memoryview(buffer))
        expected += bytes(buffer)
        buffer[:] = b"\0" * len(buffer)  # the caller reuses its buffer at once
    out.finish()
    assert raw.getvalue() == expected


def test_small_blobs_start_no_thread():
    before = threading.active_count()
    out = HashingWriter(io.BytesIO(), background=True)
    out.write(b"x" * 1000)
    assert threading.active_count() == before
    out.finish()
    assert out.hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()


def test_flush_writes_everything_so_far():
    raw = io.BytesIO()
    out = HashingWriter(raw, background=True)
    out.write(b"a" * 3_000_000)
    out.write(b"tail")
    out.flush()
    assert raw.getvalue() == b"a" * 3_000_000 + b"tail"
    out.finish()


def test_sync_is_called_in_the_background():
    calls = []
    out = HashingWriter(io.BytesIO(), background=True, sync=lambda: calls.append(1))
    for _ in range(80):
        out.write(b"z" * 1_048_576)
    out.finish()
    assert len(calls) == 2  # every 32 MiB (80 MiB written)


class FailingFile(io.BytesIO):
    def __init__(self, after):
        super().__init__()
        self.after = after

    def write(self, data):
        if self.tell() + len(data) > self.after:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_errors_of_the_worker_reach_the_producer():
    out = HashingWriter(FailingFile(5_000_000), background=True)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            out.write(b"y" * 1_048_576)
        out.finish()
    out.abort()
    assert out.closed


class FailingThirdWrite:
    """A file whose third write fails with an I/O error; all else goes to ``raw``."""

    def __init__(self, raw):
        self._raw, self._writes = raw, 0

    def write(self, data):
        self._writes += 1
        if self._writes == 3:
            raise OSError(5, "I/O error")
        return self._raw.write(data)

    def __getattr__(self, name):
        return getattr(self._raw, name)


def test_failed_background_write_leaves_no_blob_and_no_tmp(tmp_path, monkeypatch):
    import omops.blobs as blobs_module

    blobs = Blobs(str(tmp_path / "blobs"))
    create = blobs_module._create_locked  # a local store writes its locked file itself

    def failing_create(folder):
        raw, path = create(folder)
        return FailingThirdWrite(raw), path

    monkeypatch.setattr(blobs_module, "_create_locked", failing_create)
    with pytest.raises(OSError, match="I/O error"), blobs.writer() as out:
        for _ in range(20):
            out.write(b"q" * 2_000_000)
    monkeypatch.undo()
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    objects = tmp_path / "blobs" / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))


def test_large_blob_through_the_store(tmp_path):
    blobs = Blobs(str(tmp_path / "blobs"))
    data = pieces(2, count=30)
    key, size = blobs.put_with(lambda out: [out.write(chunk) for chunk in data])
    whole = b"".join(data)
    assert size == len(whole)
    assert key == hashlib.sha256(whole).hexdigest()
    assert blobs.read(key) == whole
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
