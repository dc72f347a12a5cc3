import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omops.config import Settings, load_settings
from omops.errors import ConfigError


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def test_defaults_live_under_home(tmp_path):
    settings = load_settings({"OMOPS_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.catalog == f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    assert settings.blobs == str(tmp_path / "blobs")
    assert settings.broker is None
    assert settings.bucket == "default"
    assert settings.label == "default"
    assert dict(settings.sources) == {
        "home": "env",
        "catalog": "default",
        "blobs": "default",
        "broker": "default",
        "bucket": "default",
        "label": "default",
        "monitor_webhook": "default",
        "memory_limit": "default",
        "spill": "default",
        "blobs_options": "default",
        "secret_key": "default",
    }
    assert settings.secret_key is None


def test_the_label_comes_from_the_environment_then_the_file(tmp_path):
    (tmp_path / "config.toml").write_text('label = "gpu"\n')
    assert load_settings({"OMOPS_HOME": str(tmp_path)}).label == "gpu"
    env = {"OMOPS_HOME": str(tmp_path), "OMOPS_LABEL": "cpu"}
    assert load_settings(env).label == "cpu"
    from omops.omega import Omega

    om = Omega(home=tmp_path, broker="amqp://guest:guest@127.0.0.1:9//")  # nothing connects
    assert om.runtime.label == "gpu" and om.runtime.require("other").label == "other"


def test_home_defaults_to_dot_omops_in_user_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings({})
    assert settings.home == tmp_path / ".omops"
    assert settings.sources["home"] == "default"
    assert not (tmp_path / ".omops").exists(), "resolving settings must not create the folder"


def test_home_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({"OMOPS_HOME": "~/elsewhere"}).home == tmp_path / "elsewhere"


def test_file_overrides_defaults(tmp_path):
    write_config(tmp_path, 'catalog = "sqlite:////srv/c.sqlite"\nbroker = "amqp://rabbit"\n')
    settings = load_settings({"OMOPS_HOME": str(tmp_path)})
    assert settings.catalog == "sqlite:////srv/c.sqlite"
    assert settings.broker == "amqp://rabbit"
    assert settings.blobs == str(tmp_path / "blobs")
    assert settings.sources["catalog"] == "file"
    assert settings.sources["broker"] == "file"
    assert settings.sources["blobs"] == "default"


def test_env_overrides_file_and_defaults(tmp_path):
    write_config(
        tmp_path,
        'catalog = "sqlite:////file.sqlite"\nblobs = "/file/blobs"\n'
        'broker = "redis://file"\nbucket = "filebucket"\n',
    )
    env = {
        "OMOPS_HOME": str(tmp_path),
        "OMOPS_CATALOG": "postgresql://env/db",
        "OMOPS_BUCKET": "envbucket",
    }
    settings = load_settings(env)
    assert settings.catalog == "postgresql://env/db"
    assert settings.bucket == "envbucket"
    assert settings.blobs == "/file/blobs"
    assert settings.broker == "redis://file"
    assert settings.sources["catalog"] == "env"
    assert settings.sources["bucket"] == "env"
    assert settings.sources["blobs"] == "file"


def test_every_key_can_come_from_env(tmp_path):
    env = {
        "OMOPS_HOME": str(tmp_path),
        "OMOPS_CATALOG": "sqlite:////e.sqlite",
        "OMOPS_BLOBS": "memory://e",
        "OMOPS_BROKER": "amqp://e",
        "OMOPS_BUCKET": "e",
    }
    settings = load_settings(env)
    assert (settings.catalog, settings.blobs, settings.broker, settings.bucket) == (
        "sqlite:////e.sqlite",
        "memory://e",
        "amqp://e",
        "e",
    )
    assert {settings.sources[k] for k in ("catalog", "blobs", "broker", "bucket")} == {"env"}


def test_empty_env_value_falls_through_to_file(tmp_path):
    write_config(tmp_path, 'blobs = "/file/blobs"\n')
    settings = load_settings({"OMOPS_HOME": str(tmp_path), "OMOPS_BLOBS": ""})
    assert settings.blobs == "/file/blobs"


def test_reads_os_environ_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
    monkeypatch.setenv("OMOPS_BUCKET", "from-os-environ")
    assert load_settings().bucket == "from-os-environ"


def test_bad_toml_raises_config_error_naming_the_file(tmp_path):
    write_config(tmp_path, "catalog = \n[[[")
    with pytest.raises(ConfigError, match="config.toml") as info:
        load_settings({"OMOPS_HOME": str(tmp_path)})
    assert "Fix or remove" in str(info.value)


def test_unknown_key_raises_config_error_listing_valid_keys(tmp_path):
    write_config(tmp_path, 'catalgo = "sqlite:////x"\n')
    with pytest.raises(ConfigError, match="catalgo") as info:
        load_settings({"OMOPS_HOME": str(tmp_path)})
    for key in ("catalog", "blobs", "broker", "bucket"):
        assert key in str(info.value)


def test_non_string_value_raises_config_error(tmp_path):
    write_config(tmp_path, "bucket = 3\n")
    with pytest.raises(ConfigError, match="'bucket'.*must be a string"):
        load_settings({"OMOPS_HOME": str(tmp_path)})


def test_config_error_is_a_value_error(tmp_path):
    write_config(tmp_path, "nope = 1\n")
    with pytest.raises(ValueError):
        load_settings({"OMOPS_HOME": str(tmp_path)})


def test_as_dict_is_json_able(tmp_path):
    settings = load_settings({"OMOPS_HOME": str(tmp_path)})
    data = json.loads(json.dumps(settings.as_dict()))
    assert data["home"] == str(tmp_path)
    assert data["sources"]["catalog"] == "default"
    assert isinstance(settings, Settings)


_PROBE = """
import sys, omops
heavy = sorted(m for m in ("pandas", "sqlalchemy", "pyarrow", "numpy", "duckdb", "fsspec",
                           "alembic", "sklearn", "omops.omega", "omops.catalog")
               if m in sys.modules)
print(",".join(heavy))
"""


def test_import_omops_does_no_io_and_imports_nothing_heavy(tmp_path):
    home = tmp_path / "never-created"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env["OMOPS_HOME"] = str(home)
    env["HOME"] = str(tmp_path / "user-home")
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import omops imported {result.stdout.strip()}"
    assert not home.exists()
    assert not (tmp_path / "user-home").exists()


def test_memory_limit_and_spill_folder(tmp_path):
    settings = load_settings({"OMOPS_HOME": str(tmp_path)})
    assert (settings.memory_limit, settings.spill) == (None, str(tmp_path / "spill"))
    (tmp_path / "config.toml").write_text('memory_limit = "2 gib"\nspill = "/scratch"\n')
    settings = load_settings({"OMOPS_HOME": str(tmp_path)})
    assert (settings.memory_limit, settings.spill) == ("2GiB", "/scratch")
    assert settings.sources["memory_limit"] == "file"
    env = {"OMOPS_HOME": str(tmp_path), "OMOPS_MEMORY_LIMIT": "512mb"}
    assert load_settings(env).memory_limit == "512MB"
    with pytest.raises(ConfigError, match="OMOPS_MEMORY_LIMIT='half' is not an amount of memory"):
        load_settings({**env, "OMOPS_MEMORY_LIMIT": "half"})
    (tmp_path / "config.toml").write_text('memory_limit = "lots"\n')
    with pytest.raises(ConfigError, match="memory_limit='lots'.*e.g. 4GB"):
        load_settings({"OMOPS_HOME": str(tmp_path)})
