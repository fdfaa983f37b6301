"""Django settings for siyu. Everything a deployment changes comes from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from siyu import conf

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = conf.data_dir()

SECRET_KEY = conf.secret_key()
DEBUG = os.environ.get("SIYU_DEBUG", "") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("SIYU_ALLOWED_HOSTS", "*").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "ninja",  # serves its bundled Swagger UI for /api/docs (no CDN)
    "siyu.accounts",
    "siyu.privacy",
    "siyu.customers",
    "siyu.orders",
    "siyu.ingest",
    "siyu.imports",
    "siyu.analytics",
    "siyu.valuation",
    "siyu.segments",
    "siyu.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "siyu.accounts.middleware.UserLanguageMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "siyu.urls"
WSGI_APPLICATION = "siyu.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "siyu.console.context.console",
            ],
        },
    },
]

_sqlite_path = DATA_DIR / "siyu.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{_sqlite_path}", conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the console read while ingestion writes; FULL sync makes an
    # acknowledged commit survive power loss, not only a process crash. The WAL is copied back
    # into the database every 10 000 pages (40 MB) instead of SQLite's 1 000: ingestion commits
    # several MB each, and pages rewritten by successive commits are then copied back once.
    # Ingestion's writing thread turns this off and has another thread copy it (siyu/wal.py).
    # A log that grew past 128 MB is cut back to that once it starts over.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;"
            " PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; PRAGMA journal_size_limit=134217728;"
            " PRAGMA wal_autocheckpoint=10000;"
        ),
        "transaction_mode": "IMMEDIATE",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = os.environ.get("SIYU_TIME_ZONE", "Asia/Shanghai")

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# siyu's own settings (documented in docs/settings.md; a test keeps the two in step).
SIYU_EVENT_STORE = os.environ.get("SIYU_EVENT_STORE") or str(DATA_DIR / "events.duckdb")
# Where analytics queries run: "duckdb" (the embedded event store) or "spark".
SIYU_ANALYTICS_ENGINE = os.environ.get("SIYU_ANALYTICS_ENGINE", "duckdb")
SIYU_SPARK_MASTER = os.environ.get("SIYU_SPARK_MASTER", "local[2]")
SIYU_SPARK_DATA = os.environ.get("SIYU_SPARK_DATA", "")
# How often ``siyu serve`` refreshes every segment and rule tag, and refits the CLV models.
SIYU_SEGMENT_REFRESH_MINUTES = float(os.environ.get("SIYU_SEGMENT_REFRESH_MINUTES", "60"))
SIYU_CLV_REFIT_HOURS = float(os.environ.get("SIYU_CLV_REFIT_HOURS", "24"))
# Recompute the dashboard's default view in the background once new events settle ("0": off).
SIYU_DASHBOARD_WARMUP = os.environ.get("SIYU_DASHBOARD_WARMUP", "1") not in ("0", "false", "no", "")
SIYU_CURRENCY = os.environ.get("SIYU_CURRENCY", "CNY")
SIYU_DEFAULT_REGION = os.environ.get("SIYU_DEFAULT_REGION", "CN")
SIYU_INGEST_SYNC = os.environ.get("SIYU_INGEST_SYNC", "") == "1"
SIYU_MAX_MESSAGE_BYTES = 32 * 1024
SIYU_MAX_BATCH_BYTES = 500 * 1024
# Processes that parse ingestion bodies for `siyu serve` (0: parse in the request threads).
SIYU_INGEST_WORKERS = int(os.environ["SIYU_INGEST_WORKERS"]) if os.environ.get("SIYU_INGEST_WORKERS") else None
SIYU_INGEST_QUEUE_LIMIT = int(os.environ.get("SIYU_INGEST_QUEUE_LIMIT", "200"))
# Accepted messages wait in the intake log until the writer has processed them (ingest/intake.py).
SIYU_INGEST_INTAKE = os.environ.get("SIYU_INGEST_INTAKE") or str(DATA_DIR / "intake.sqlite3")
SIYU_INGEST_BACKLOG_LIMIT = int(os.environ.get("SIYU_INGEST_BACKLOG_LIMIT", "60000"))
# `siyu serve` processes the intake log in a process of its own ("0": in a thread of the server).
SIYU_INGEST_PROCESS = os.environ.get("SIYU_INGEST_PROCESS", "1") not in ("0", "false", "no", "")
SIYU_MAX_UPLOAD_BYTES = int(os.environ.get("SIYU_MAX_UPLOAD_BYTES", str(512 * 1024 * 1024)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Not propagated: a library that logs through the root logger gives it a handler of its own,
    # and every line of ours would then be printed twice.
    "loggers": {"siyu": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
# Static files are served by the app process itself (WhiteNoise): no web server to set up.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
