"""Django settings for Pixelmill, read from the environment (see README: Configuration)."""

import os
from pathlib import Path

import dj_database_url
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PIXELMILL_DATA_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("PIXELMILL_DEBUG", False)


def read_secret_key() -> str:
    """The key comes from the environment; a development checkout keeps a generated one in DATA_DIR."""
    key = os.environ.get("PIXELMILL_SECRET_KEY")
    if key:
        return key
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = get_random_secret_key()
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = read_secret_key()
ALLOWED_HOSTS = env_list("PIXELMILL_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("PIXELMILL_CSRF_TRUSTED_ORIGINS", "")

# Behind HTTPS (production): secure cookies, HSTS and redirects. `manage.py check --deploy` is clean with it.
SECURE = env_bool("PIXELMILL_SECURE", False)
if SECURE:
    SECURE_SSL_REDIRECT = env_bool("PIXELMILL_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("PIXELMILL_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("PIXELMILL_HSTS_PRELOAD", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env_bool("PIXELMILL_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_rq",
    "dashboard",
]

MIDDLEWARE = [
    "dashboard.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
            ],
        },
    },
]

# SQLite unless DATABASE_URL is set. WAL and IMMEDIATE transactions let several
# worker processes write to one SQLite file without "database is locked".
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("PIXELMILL_DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not memory) so worker subprocesses share it; per process so two test runs never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "campaign-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("PIXELMILL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
MEDIA_ROOT = Path(os.environ.get("PIXELMILL_MEDIA_ROOT", DATA_DIR / "media"))
# Media is never served from a public URL: every file goes through an authenticated view.
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "allow_overwrite": True},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# Uploads: Django spools anything over 2.5 MB to disk, so a 1,000-file upload never sits in memory.
DATA_UPLOAD_MAX_NUMBER_FILES = int(os.environ.get("PIXELMILL_MAX_UPLOAD_FILES", "1000"))
# One request's whole body (all files of an upload together); larger ones get a 413 before it is read.
PIXELMILL_MAX_REQUEST_BYTES = int(os.environ.get("PIXELMILL_MAX_REQUEST_BYTES", str(4 * 1024**3)))
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = None

# Redis is transport, the database is the source of truth. Unset, it is the embedded Redis that
# `manage.py up` (make run) starts, so commands run from another terminal reach the same queues.
PIXELMILL_REDIS_PORT = int(os.environ.get("PIXELMILL_REDIS_PORT", "6390"))
REDIS_URL = os.environ.get("REDIS_URL", f"redis://127.0.0.1:{PIXELMILL_REDIS_PORT}/0")
RQ_QUEUES = {
    "control": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
# In-process jobs by default (see jobs/worker.py for why and what was measured); forking on request.
# A worker exits after this many jobs and `manage.py up` starts a fresh one, so memory cannot creep.
PIXELMILL_WORKER_MAX_JOBS = int(os.environ.get("PIXELMILL_WORKER_MAX_JOBS", "1000"))
# RQ workers (threads) per worker process: several provider calls in flight for one process's memory;
# local rendering still takes one CPU turn per process (jobs/cpu_gate.py).
PIXELMILL_WORKER_THREADS = int(os.environ.get("PIXELMILL_WORKER_THREADS", "4"))
RQ = {"WORKER_CLASS": os.environ.get("PIXELMILL_WORKER_CLASS", "jobs.worker.PixelmillWorker")}
RQ_SHOW_ADMIN_LINK = False  # its admin entry checks only is_staff; the pages live at /admin/rq/

# Pixelmill's own settings.
PIXELMILL_MAX_ATTEMPTS = int(os.environ.get("PIXELMILL_MAX_ATTEMPTS", "5"))
PIXELMILL_RETRY_BASE_SECONDS = float(os.environ.get("PIXELMILL_RETRY_BASE_SECONDS", "2"))
PIXELMILL_RETRY_MAX_SECONDS = float(os.environ.get("PIXELMILL_RETRY_MAX_SECONDS", "300"))
# A running task's worker renews its lease every third of this; a lease that expires means the worker died.
PIXELMILL_TASK_LEASE_SECONDS = float(os.environ.get("PIXELMILL_TASK_LEASE_SECONDS", "60"))
PIXELMILL_RECONCILE_INTERVAL_SECONDS = int(os.environ.get("PIXELMILL_RECONCILE_INTERVAL_SECONDS", "30"))
PIXELMILL_RECONCILE_GRACE_SECONDS = int(os.environ.get("PIXELMILL_RECONCILE_GRACE_SECONDS", "60"))
# RQ refreshes a started job's heartbeat every 30 s; a job silent for longer lost its whole worker.
PIXELMILL_STARTED_JOB_SILENCE_SECONDS = int(os.environ.get("PIXELMILL_STARTED_JOB_SILENCE_SECONDS", "90"))
PIXELMILL_MAX_UPLOAD_BYTES = int(os.environ.get("PIXELMILL_MAX_UPLOAD_BYTES", str(200 * 1024 * 1024)))
PIXELMILL_MAX_PIXELS = int(os.environ.get("PIXELMILL_MAX_PIXELS", str(100_000_000)))
PIXELMILL_ZIP_MAX_MEMBERS = int(os.environ.get("PIXELMILL_ZIP_MAX_MEMBERS", "5000"))
PIXELMILL_ZIP_MAX_TOTAL_BYTES = int(os.environ.get("PIXELMILL_ZIP_MAX_TOTAL_BYTES", str(4 * 1024**3)))

# Import by URL: public addresses only, unless an operator trusts a network (e.g. "10.20.0.0/16").
PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS = env_list("PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS", "")
PIXELMILL_URL_IMPORT_TIMEOUT_SECONDS = float(os.environ.get("PIXELMILL_URL_IMPORT_TIMEOUT_SECONDS", "10"))
PIXELMILL_URL_IMPORT_MAX_URLS = int(os.environ.get("PIXELMILL_URL_IMPORT_MAX_URLS", "5000"))

# Providers: a call retries inside the attempt while the wait is short; a longer wait hands the task
# back to the scheduler instead of holding a worker.
PIXELMILL_PROVIDER_TRIES = int(os.environ.get("PIXELMILL_PROVIDER_TRIES", "3"))
PIXELMILL_PROVIDER_MAX_INLINE_WAIT = float(os.environ.get("PIXELMILL_PROVIDER_MAX_INLINE_WAIT", "10"))
PIXELMILL_PROVIDER_BACKOFF_SECONDS = float(os.environ.get("PIXELMILL_PROVIDER_BACKOFF_SECONDS", "0.5"))
PIXELMILL_MAX_DEFERRALS = int(os.environ.get("PIXELMILL_MAX_DEFERRALS", "200"))
# The circuit opens when, within one window, at least MIN_CALLS calls were made and FAILURE_RATE of them
# failed (5xx, timeouts, resets); it stays open OPEN_SECONDS.
PIXELMILL_BREAKER_WINDOW_SECONDS = int(os.environ.get("PIXELMILL_BREAKER_WINDOW_SECONDS", "30"))
PIXELMILL_BREAKER_MIN_CALLS = int(os.environ.get("PIXELMILL_BREAKER_MIN_CALLS", "10"))
PIXELMILL_BREAKER_FAILURE_RATE = float(os.environ.get("PIXELMILL_BREAKER_FAILURE_RATE", "0.6"))
PIXELMILL_BREAKER_OPEN_SECONDS = float(os.environ.get("PIXELMILL_BREAKER_OPEN_SECONDS", "30"))
# Campaign webhooks (signed POSTs when a run finishes): tries per delivery and the timeout of each try.
# The receiver's address passes the same public-address check as URL import.
PIXELMILL_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("PIXELMILL_WEBHOOK_MAX_ATTEMPTS", "8"))
PIXELMILL_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("PIXELMILL_WEBHOOK_TIMEOUT_SECONDS", "10"))
# Public base URL of the dashboard (e.g. https://pixelmill.example.com) for links in webhook payloads;
# empty = paths only.
PIXELMILL_BASE_URL = os.environ.get("PIXELMILL_BASE_URL", "")

# Estimates before Process and budget caps: the currency providers' prices are written in (a label only),
# and the task time assumed until tasks have been measured.
PIXELMILL_CURRENCY = os.environ.get("PIXELMILL_CURRENCY", "USD")
PIXELMILL_ASSUMED_TASK_SECONDS = float(os.environ.get("PIXELMILL_ASSUMED_TASK_SECONDS", "5"))

# Generation from prompts (fal queue): a worker polls a submitted request every POLL_SECONDS for at most
# POLL_WINDOW_SECONDS, then frees itself and looks again RECHECK_SECONDS later. With a public base URL
# (e.g. https://pixelmill.example.com) fal also POSTs to our webhook when a request is done; empty = poll only.
PIXELMILL_GENERATION_POLL_SECONDS = float(os.environ.get("PIXELMILL_GENERATION_POLL_SECONDS", "1"))
PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = float(
    os.environ.get("PIXELMILL_GENERATION_POLL_WINDOW_SECONDS", "30")
)
PIXELMILL_GENERATION_RECHECK_SECONDS = float(os.environ.get("PIXELMILL_GENERATION_RECHECK_SECONDS", "5"))
PIXELMILL_GENERATION_MAX_PROMPTS = int(os.environ.get("PIXELMILL_GENERATION_MAX_PROMPTS", "500"))
PIXELMILL_FAL_WEBHOOK_BASE_URL = os.environ.get("PIXELMILL_FAL_WEBHOOK_BASE_URL", "")

LOG_LEVEL = os.environ.get("PIXELMILL_LOG_LEVEL", "INFO")
PIXELMILL_RQ_LOG_LEVEL = os.environ.get("PIXELMILL_RQ_LOG_LEVEL", "WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        **{name: {"level": PIXELMILL_RQ_LOG_LEVEL} for name in ("rq.worker", "rq.cron", "rq.scheduler")},
        # httpx logs every URL at INFO, and providers hand out signed result URLs: keep them out of logs.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
