"""``om.secrets``: per bucket, encrypted at rest with OMOPS_SECRET_KEY, on each catalog backend."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from omops.errors import ConfigError, InvalidData, InvalidName, NotFound
from omops.omega import Omega


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = Fernet.generate_key().decode()
    monkeypatch.setenv("OMOPS_SECRET_KEY", value)
    return value


@pytest.fixture
def keyed(key: str, om: Omega) -> Omega:
    assert om.secrets.key == key  # read from the environment like every setting
    return om


def stored_tokens(om: Omega) -> list[str]:
    with om.catalog.engine().connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT token FROM secrets"))]


def test_put_get_list_drop_per_bucket(keyed: Omega):
    om = keyed
    value = f"pw-{uuid.uuid4().hex}"
    om.secrets.put("password", value)
    om["dev"].secrets.put("password", "other")
    om.secrets.put("user", "ana")
    assert om.secrets.get("password") == value
    assert om["dev"].secrets.get("password") == "other"
    assert om.secrets.list() == ["password", "user"]
    assert om["dev"].secrets.list() == ["password"]
    assert om["prod"].secrets.list() == []
    om.secrets.put("password", "changed")
    assert om.secrets.get("password") == "changed"
    assert om.secrets.drop("password") is True
    with pytest.raises(NotFound, match="secret 'password' does not exist in bucket 'default'"):
        om.secrets.get("password")
    with pytest.raises(NotFound):
        om.secrets.drop("password")
    assert om.secrets.drop("password", force=True) is False
    assert om["dev"].secrets.exists("password")


def test_values_are_encrypted_at_rest(keyed: Omega, catalog_url: str, tmp_path):
    value = f"pw-{uuid.uuid4().hex}"
    keyed.secrets.put("password", value)
    tokens = stored_tokens(keyed)
    assert len(tokens) == 1 and value not in tokens[0]
    if catalog_url.startswith("sqlite"):
        keyed.catalog.close()
        assert value.encode() not in (tmp_path / "catalog.sqlite").read_bytes()


def test_a_missing_or_malformed_key_is_a_clear_error(om: Omega, monkeypatch):
    assert om.secrets.key is None
    with pytest.raises(ConfigError, match="OMOPS_SECRET_KEY is not set.*om secrets new-key"):
        om.secrets.put("password", "x")
    assert om.secrets.list() == []  # names need no key
    monkeypatch.setenv("OMOPS_SECRET_KEY", "not-a-key")
    fresh = Omega(om.catalog, om.blobs)
    with pytest.raises(ConfigError, match="key #1 is not a Fernet key") as info:
        fresh.secrets.put("password", "x")
    assert "not-a-key" not in str(info.value)


def test_another_key_cannot_read_and_keys_rotate(keyed: Omega, key: str, monkeypatch):
    keyed.secrets.put("password", "old-value")
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("OMOPS_SECRET_KEY", new)
    other = Omega(keyed.catalog, keyed.blobs)
    with pytest.raises(ConfigError, match="encrypted with another key.*'new,old'"):
        other.secrets.get("password")
    monkeypatch.setenv("OMOPS_SECRET_KEY", f"{new},{key}")
    rotated = Omega(keyed.catalog, keyed.blobs)
    assert rotated.secrets.get("password") == "old-value"
    rotated.secrets.put("password", "new-value")  # encrypted with the first key now
    monkeypatch.setenv("OMOPS_SECRET_KEY", new)
    assert Omega(keyed.catalog, keyed.blobs).secrets.get("password") == "new-value"


def test_names_and_values_are_checked(keyed: Omega):
    for name in ("", "1abc", "a-b", "a b", "{x}", "x" * 129, None):
        with pytest.raises(InvalidName, match="invalid secret name"):
            keyed.secrets.put(name, "v")
    with pytest.raises(InvalidData, match="must be text, got int"):
        keyed.secrets.put("n", 42)
    with pytest.raises(InvalidData, match="over 65536 bytes"):
        keyed.secrets.put("n", "x" * 70_000)
    assert keyed.secrets.list() == []


def test_fill_takes_given_values_first_and_never_the_environment(keyed: Omega, monkeypatch):
    keyed.secrets.put("user", "stored")
    monkeypatch.setenv("password", "from-env")
    monkeypatch.setenv("PASSWORD", "from-env")
    assert keyed.secrets.fill("{user}:{password}", {"password": "given"}) == "stored:given"
    assert keyed.secrets.fill("{user}", {"user": "given"}) == "given"
    with pytest.raises(NotFound, match=r"placeholder \{password\} has no value"):
        keyed.secrets.fill("{user}:{password}")
