"""Settings for Contained, read from the environment with embedded defaults.

With no environment at all the app runs on one machine: SQLite and the in-memory channel layer
under ``$CONTAINED_DATA_DIR`` (default ``<repo>/var``). ``DATABASE_URL`` and ``REDIS_URL`` switch
to PostgreSQL and Redis for several workers. Debug is on only when ``CONTAINED_DEBUG=1``, which
``make run`` sets; everything else gets production settings that pass ``check --deploy``.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool) -> bool:
    """True only for "1" and False only for "0", so a typo never silently flips a setting."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, not {value!r}")
    return value == "1"


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = os.environ.get("CONTAINED_DEBUG", "") == "1"

DATA_DIR = Path(os.environ.get("CONTAINED_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _persistent_secret_key(path: Path) -> str:
    """Read the key made on first start, or make it; O_EXCL lets concurrent workers agree."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "django-insecure-contained-dev-key-never-use-in-production"
    if DEBUG
    else _persistent_secret_key(DATA_DIR / "secret_key")
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Same-origin POSTs are already checked against the Host header; this list only matters behind a
# proxy that changes the scheme or host, e.g. "https://contained.example.com".
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "whitenoise.runserver_nostatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "sandboxapp",
    "lessons",
    "classroom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "sandboxapp.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "sandboxapp.urls"
ASGI_APPLICATION = "sandboxapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sandboxapp.context_processors.site",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            # Daphne serves requests concurrently: WAL and IMMEDIATE transactions turn SQLite's
            # "database is locked" errors into short waits.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
        }
    }
    # Shared by every worker, so a rate limit counts a learner once whichever worker they reach.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            # An unreachable Redis costs a connect a second at most (the limit then opens).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The privileged daemon that owns the sandboxes; the web tier only talks to it over this socket.
SANDBOXD_SOCKET = Path(os.environ.get("SANDBOXD_SOCKET") or DATA_DIR / "run" / "sandboxd.sock")

# The runtime's own state: images, learners' layers, id blocks, running sandboxes. Outside
# the repository on purpose: every sandbox's unprivileged root must be able to traverse it.
SANDBOX_STATE_DIR = Path(os.environ.get("CONTAINED_STATE_DIR") or "/var/lib/contained")
# Sandbox cgroups are created under this path in every cgroup hierarchy.
SANDBOX_CGROUP_PARENT = os.environ.get("CONTAINED_CGROUP_PARENT") or "contained"
SANDBOX_MAX = int(os.environ.get("CONTAINED_MAX_SANDBOXES") or 300)
# Each learner's sandbox by default; a lesson or classroom may ask for up to the maximum.
SANDBOX_LIMITS = {
    "memory": os.environ.get("CONTAINED_SANDBOX_MEMORY") or "256M",
    "pids": int(os.environ.get("CONTAINED_SANDBOX_PIDS") or 256),
    "cpus": float(os.environ.get("CONTAINED_SANDBOX_CPUS") or 1.0),
    "disk": os.environ.get("CONTAINED_SANDBOX_DISK") or "512M",
}
SANDBOX_MAX_LIMITS = {"memory": "2G", "pids": 1024, "cpus": 2.0, "disk": "4G"}
# Who may connect to sandboxd: root and, in production, the web app's own user.
SANDBOXD_ALLOWED_UIDS = [
    int(uid) for uid in (os.environ.get("SANDBOXD_ALLOWED_UIDS") or "0").split(",") if uid
]
# With a group (name or gid) the socket is 0660 for it; without, root only (0600).
SANDBOXD_SOCKET_GROUP = os.environ.get("SANDBOXD_SOCKET_GROUP") or None
SANDBOXD_IDLE_TIMEOUT = float(os.environ.get("SANDBOXD_IDLE_TIMEOUT") or 1800)
SANDBOXD_MAX_PER_LEARNER = int(os.environ.get("SANDBOXD_MAX_PER_LEARNER") or 4)
SANDBOXD_CREATES_PER_MINUTE = int(os.environ.get("SANDBOXD_CREATES_PER_MINUTE") or 12)
# Formatted learner layers of the default size kept ready (about 0.4 MB of disk each for
# 512 MiB: nothing is zeroed), so a new learner's sandbox starts without waiting for mkfs.
# Two more (at most this many) are kept mounted ahead, each holding a loop device. 0: none.
SANDBOXD_SPARE_VOLUMES = int(os.environ.get("SANDBOXD_SPARE_VOLUMES") or 4)
# Scrollback kept per terminal, replayed on reconnect (bytes). Half of it is also how far
# output may run ahead of what the browser has drawn: more is faster bulk output (256 KiB:
# about 25 MB/s here, 1 MiB: 35-39), less is a quicker Ctrl-C during a flood.
SANDBOXD_RING_BYTES = int(os.environ.get("SANDBOXD_RING_BYTES") or 1024 * 1024)
# Bytes a second a flooding terminal is read at while another learner types, past a 128 KiB
# burst (a flood's cost falls mostly outside its sandbox: docs/architecture.md). 0: off.
SANDBOXD_FLOOD_RATE = int(os.environ.get("SANDBOXD_FLOOD_RATE") or 64 * 1024)
# Terminal sessions recorded as asciicast v2 files, for instructors to replay.
SANDBOXD_RECORDINGS_DIR = (
    Path(os.environ["SANDBOXD_RECORDINGS_DIR"])
    if os.environ.get("SANDBOXD_RECORDINGS_DIR")
    else None
)

LESSONS_CONTENT_DIR = BASE_DIR / "lessons" / "content"
# Anyone may start as a guest with a display name; 0 requires an account instead.
GUESTS_ALLOWED = env_flag("CONTAINED_GUESTS", default=True)
# `manage.py prune_guests` deletes guests (and their files) not seen for this many days. A
# guest is their browser session, which ends after SESSION_COOKIE_AGE (two weeks): past
# that, nobody can come back as them.
GUEST_RETENTION_DAYS = int(os.environ.get("CONTAINED_GUEST_RETENTION_DAYS") or 30)
# Websocket (re)connections a learner may open per minute, whichever worker they reach when
# the cache is shared.
TERMINAL_CONNECTS_PER_MINUTE = int(os.environ.get("CONTAINED_TERMINAL_CONNECTS_PER_MINUTE") or 30)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# A container image collects its static files at build time, outside the data volume.
STATIC_ROOT = Path(os.environ.get("CONTAINED_STATIC_ROOT") or DATA_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed names let browsers cache static files forever in production; in debug
    # the plain storage means no collectstatic is needed after every edit.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# HTTPS is assumed outside debug. CONTAINED_HTTPS=0 serves plain HTTP (check --deploy then warns).
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, set CONTAINED_PROXY_SSL_HEADER=1, and
# only then: trusting that header from clients that can reach Daphne directly lets them lie.
HTTPS = env_flag("CONTAINED_HTTPS", default=not DEBUG)
if env_flag("CONTAINED_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS
# Load balancers and container health checks probe over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("CONTAINED_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("CONTAINED_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_flag("CONTAINED_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname:<7} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {
        "handlers": ["stderr"],
        "level": os.environ.get("CONTAINED_LOG_LEVEL", "INFO").upper(),
    },
    "loggers": {
        # Replaces Django's defaults (console in debug only, plus mail_admins) so its messages
        # appear once, in the same format, in debug and production alike.
        "django": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
