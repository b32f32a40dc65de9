"""Settings come from the environment, each test in a fresh interpreter with a clean one."""

import json
import re
import stat
from pathlib import Path

import pytest

DUMP = """
import json
import django
from django.conf import settings

django.setup()
db = settings.DATABASES["default"]
layer = settings.CHANNEL_LAYERS["default"]
print(json.dumps({
    "engine": db["ENGINE"],
    "name": str(db["NAME"]),
    "host": db.get("HOST", ""),
    "layer": layer["BACKEND"],
    "layer_hosts": layer.get("CONFIG", {}).get("hosts"),
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
    "debug": settings.DEBUG,
    "secret_key": settings.SECRET_KEY,
    "sandboxd_socket": str(settings.SANDBOXD_SOCKET),
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "hsts_seconds": settings.SECURE_HSTS_SECONDS,
    "proxy_ssl_header": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
    "static_storage": settings.STORAGES["staticfiles"]["BACKEND"],
    "static_root": str(settings.STATIC_ROOT),
    "cache": settings.CACHES["default"]["BACKEND"],
    "cache_location": settings.CACHES["default"].get("LOCATION"),
}))
"""


@pytest.fixture
def load_settings(fresh_env, run_python):
    def load(**env: str) -> dict:
        result = run_python(DUMP, fresh_env(**env))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return load


def test_defaults_are_sqlite_and_in_memory_layer_in_a_created_data_dir(load_settings, tmp_path):
    data = tmp_path / "data"
    assert not data.exists()

    found = load_settings()

    assert data.is_dir()
    assert found["engine"] == "django.db.backends.sqlite3"
    assert Path(found["name"]) == data / "db.sqlite3"
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert found["debug"] is False
    assert Path(found["sandboxd_socket"]) == data / "run" / "sandboxd.sock"


def test_production_defaults_are_https_and_hashed_static_files(load_settings):
    found = load_settings()

    assert found["ssl_redirect"] is True
    assert found["hsts_seconds"] >= 31536000
    assert found["proxy_ssl_header"] is None
    assert found["static_storage"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_database_url_and_redis_url_switch_backends(load_settings):
    found = load_settings(
        DATABASE_URL="postgres://learner:secret@db.example:5433/contained",
        REDIS_URL="redis://redis.example:6379/2",
    )

    assert found["engine"] == "django.db.backends.postgresql"
    assert found["name"] == "contained"
    assert found["host"] == "db.example"
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert found["layer_hosts"] == ["redis://redis.example:6379/2"]
    # Rate limits then count a learner once across every worker.
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert found["cache_location"] == "redis://redis.example:6379/2"


def test_without_redis_the_cache_is_per_process(load_settings):
    assert load_settings()["cache"] == "django.core.cache.backends.locmem.LocMemCache"


def test_static_files_collect_into_the_data_dir_unless_an_image_says_otherwise(
    load_settings, tmp_path
):
    assert Path(load_settings()["static_root"]) == tmp_path / "data" / "staticfiles"
    found = load_settings(CONTAINED_STATIC_ROOT="/app/staticfiles")
    assert found["static_root"] == "/app/staticfiles"


def test_host_lists_are_comma_separated(load_settings):
    found = load_settings(
        ALLOWED_HOSTS="contained.example, lab.example",
        CSRF_TRUSTED_ORIGINS="https://contained.example",
    )

    assert found["allowed_hosts"] == ["contained.example", "lab.example"]
    assert found["csrf_trusted_origins"] == ["https://contained.example"]


@pytest.mark.parametrize(("value", "debug"), [("1", True), ("true", False), ("0", False)])
def test_debug_only_when_contained_debug_is_1(load_settings, value, debug):
    found = load_settings(CONTAINED_DEBUG=value)

    assert found["debug"] is debug
    assert found["ssl_redirect"] is not debug


def test_debug_uses_a_fixed_dev_key_and_writes_no_key_file(load_settings, tmp_path):
    found = load_settings(CONTAINED_DEBUG="1")

    assert found["secret_key"].startswith("django-insecure-")
    assert not (tmp_path / "data" / "secret_key").exists()


def test_production_secret_key_is_generated_once_and_private(load_settings, tmp_path):
    first = load_settings()["secret_key"]
    key_file = tmp_path / "data" / "secret_key"

    assert key_file.read_text().strip() == first
    assert len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings()["secret_key"] == first


def test_secret_key_from_the_environment_wins(load_settings, tmp_path):
    found = load_settings(SECRET_KEY="from-the-environment-" + "x" * 40)

    assert found["secret_key"] == "from-the-environment-" + "x" * 40
    assert not (tmp_path / "data" / "secret_key").exists()


def test_proxy_ssl_header_is_trusted_only_when_asked(load_settings):
    found = load_settings(CONTAINED_PROXY_SSL_HEADER="1")

    assert found["proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_flag_that_is_not_0_or_1_is_refused_clearly(fresh_env, run_python):
    result = run_python(DUMP, fresh_env(CONTAINED_HTTPS="yes"))

    assert result.returncode != 0
    assert "CONTAINED_HTTPS must be 0 or 1, not 'yes'" in result.stderr


def test_env_example_documents_every_setting_the_app_reads():
    repo = Path(__file__).resolve().parents[2]
    source = (repo / "sandboxapp" / "settings.py").read_text()
    read = set(
        re.findall(r"""(?:environ(?:\.get\(|\[)|env_flag\(|env_list\()"([A-Z_]+)\"""", source)
    )
    example = (repo / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z_]+)=", example, re.MULTILINE))
    assert len(read) > 30
    assert read - documented == set()
