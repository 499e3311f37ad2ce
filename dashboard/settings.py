"""Django settings for Pixelmill, read from the environment (see README: Configuration)."""

import os
import re
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key
from environs import Env, EnvValidationError, validate

# Every variable is read through `env`. Not eager: a bad value is collected rather than raised at once, and
# `check_environment()` at the bottom names every bad variable with its value in one error at startup.
env = Env(eager=False)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env.path("PIXELMILL_DATA_DIR", BASE_DIR / "var")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env.str(name, default).split(",") if item.strip()]


def check_environment() -> None:
    """Raise one error naming each environment variable whose value could not be read, and that value."""
    try:
        env.seal()
    except EnvValidationError as error:
        problems = "; ".join(
            f"{name}={masked(os.environ.get(name, ''))!r}: {' '.join(messages)}"
            for name, messages in error.error_messages.items()
        )
        raise ImproperlyConfigured(f"Invalid environment variable(s): {problems}") from None


def masked(value: str) -> str:
    """The value with the password of a URL in it (DATABASE_URL) replaced by ***: errors end up in logs."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", value)


DEBUG = env.bool("PIXELMILL_DEBUG", False)


def read_secret_key() -> str:
    """The key comes from the environment; a development checkout keeps a generated one in DATA_DIR."""
    key = env.str("PIXELMILL_SECRET_KEY", "")
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
# The upload script asks for JSON: a stale token is answered in JSON it can show, not an HTML page.
CSRF_FAILURE_VIEW = "dashboard.views.errors.csrf_failure"

# Behind HTTPS (production): secure cookies, HSTS and redirects. `manage.py check --deploy` is clean with it.
SECURE = env.bool("PIXELMILL_SECURE", False)
if SECURE:
    SECURE_SSL_REDIRECT = env.bool("PIXELMILL_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("PIXELMILL_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("PIXELMILL_HSTS_PRELOAD", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Behind a reverse proxy: trust its X-Forwarded-Proto, and the address it appends to X-Forwarded-For (logins).
PIXELMILL_BEHIND_PROXY = env.bool("PIXELMILL_BEHIND_PROXY", False)
if PIXELMILL_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp) on every page, the admin's too: scripts and style sheets only from our own
# static files (no inline <script> or <style>; htmx's indicator style is off, templates/base.html). Style
# *attributes* are allowed: progress bars, the focal marker and the compare stage set widths and positions
# from data, and an attribute can neither read the page nor load from elsewhere (img-src). style-src keeps
# 'unsafe-inline' only for browsers without style-src-elem/-attr (before Safari 15.4, Firefox 108), which would
# otherwise drop those widths; newer ones obey the two narrower directives. The queue pages add one hash
# (dashboard/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "style-src-elem": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

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
    "axes",
    "csp",
    "dashboard",
]

MIDDLEWARE = [
    "dashboard.middleware.SharePrivacyMiddleware",
    "dashboard.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the page saying so.
    "axes.middleware.AxesMiddleware",
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
    "default": env.dj_db_url(
        "DATABASE_URL",
        default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=env.int("PIXELMILL_DB_CONN_MAX_AGE", 60),
    )
    or {}  # only when DATABASE_URL is invalid, which check_environment() reports below
}
if DATABASES["default"].get("ENGINE") == "django.db.backends.sqlite3":
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

# Login throttling (django-axes), on both login pages: after LOGIN_FAILURE_LIMIT wrong passwords for one user name
# from one address, that user name is refused from that address, the right password too, until
# LOGIN_COOLOFF_MINUTES after the last wrong one, or until an admin unlocks it (admin: Access attempts, or
# `manage.py axes_reset_username NAME`). Other people, and the same person elsewhere, log in as before.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PIXELMILL_LOGIN_FAILURE_LIMIT = env.int("PIXELMILL_LOGIN_FAILURE_LIMIT", 5, validate=validate.Range(min=1))
PIXELMILL_LOGIN_COOLOFF_MINUTES = env.int(
    "PIXELMILL_LOGIN_COOLOFF_MINUTES", 15, validate=validate.Range(min=1)
)
AXES_FAILURE_LIMIT = PIXELMILL_LOGIN_FAILURE_LIMIT
# None only when the value is invalid, which check_environment() reports below.
AXES_COOLOFF_TIME = timedelta(minutes=PIXELMILL_LOGIN_COOLOFF_MINUTES or 0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Tries while locked out are refused without extending the lock, so the page's "paused until" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "dashboard.views.accounts.locked_out"
AXES_CLIENT_IP_CALLABLE = "dashboard.views.accounts.client_address"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("PIXELMILL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
MEDIA_ROOT = env.path("PIXELMILL_MEDIA_ROOT", DATA_DIR / "media")
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
# Object storage (README: Object storage): with PIXELMILL_STORAGE=s3 every stored file (sources, outputs,
# thumbnails, previews, the step cache, deferred uploads) lives in one S3-compatible bucket, through
# django-storages, so web and worker processes on different machines need no shared disk. The AWS_* names are
# the ones boto3 and django-storages document; without the two keys boto3 finds credentials itself (an
# instance role). The bucket stays private: a file leaves through a view that checks the team first.
PIXELMILL_STORAGE = env.str("PIXELMILL_STORAGE", "local", validate=validate.OneOf(["local", "s3"]))
# With S3, an output's Download answers with a redirect to a presigned link that works for
# PIXELMILL_STORAGE_URL_SECONDS, after the same team check, so the bytes go from the bucket to the browser
# directly. Pictures shown inside pages are still served by the dashboard (same origin for the CSP, cacheable).
PIXELMILL_STORAGE_REDIRECT_DOWNLOADS = env.bool("PIXELMILL_STORAGE_REDIRECT_DOWNLOADS", False)
PIXELMILL_STORAGE_URL_SECONDS = env.int(
    "PIXELMILL_STORAGE_URL_SECONDS", 300, validate=validate.Range(min=1, max=7 * 24 * 3600)
)
if PIXELMILL_STORAGE == "s3":
    STORAGES["default"] = {
        "BACKEND": "dashboard.s3_storage.S3MediaStorage",
        "OPTIONS": {
            "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME", validate=validate.Length(min=1)),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", "") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", "") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", "") or None,
            # "path" for servers that cannot take the bucket in the host name (MinIO, most self-hosted ones).
            "addressing_style": env.str(
                "AWS_S3_ADDRESSING_STYLE", "auto", validate=validate.OneOf(["auto", "path", "virtual"])
            ),
            # Signature version 4: what every region and S3-compatible server takes, and presigned links that
            # expire after PIXELMILL_STORAGE_URL_SECONDS (at most 7 days).
            "signature_version": "s3v4",
            # Keys are ours and deterministic (a retried attempt writes the same output again): overwrite.
            "file_overwrite": True,
            "default_acl": None,
            "querystring_expire": PIXELMILL_STORAGE_URL_SECONDS,
            # A file opened with storage.open (an uploaded zip a worker unpacks) is downloaded into memory up to
            # this size, into a temporary file (never the media folder) past it; dashboard/storage.py streams
            # downloads and the ZIP, and reads a source for decoding in one request.
            "max_memory_size": 8 * 1024 * 1024,
        },
    }
# Uploads. One request's whole body (all files of an upload together) may be this large; a larger one gets a
# 413 before it is read. It is what the web process may spool to FILE_UPLOAD_TEMP_DIR for one request: five of
# the largest images, or a zip of a day's shoot; a larger set goes in batches or as several zip archives.
PIXELMILL_MAX_REQUEST_BYTES = env.int("PIXELMILL_MAX_REQUEST_BYTES", 1024**3)
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("PIXELMILL_MAX_UPLOAD_FILES", 1000)
# An uploaded file stays in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, and only while the request's files in
# memory add up to at most PIXELMILL_UPLOAD_MEMORY_BYTES; everything else is spooled to the temporary folder.
# (Per file alone, 1,000 files of 2.4 MB would sit in memory: 2.4 GB.) Form fields besides the files may hold
# DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MB).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
PIXELMILL_UPLOAD_MEMORY_BYTES = env.int("PIXELMILL_UPLOAD_MEMORY_BYTES", 10 * FILE_UPLOAD_MAX_MEMORY_SIZE)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = env.str("PIXELMILL_UPLOAD_TEMP_DIR", "") or None
# A request body must arrive within TIMEOUT seconds, each MIN_RATE bytes received earning one more second
# (Apache's default RequestReadTimeout body=20,MinRate=500); a slower client gets 408. Under gunicorn's gevent
# worker only, the web server of `make run` and the image (dashboard/slow_clients.py).
PIXELMILL_REQUEST_BODY_TIMEOUT_SECONDS = env.float("PIXELMILL_REQUEST_BODY_TIMEOUT_SECONDS", 20.0)
PIXELMILL_REQUEST_BODY_MIN_RATE = env.float(
    "PIXELMILL_REQUEST_BODY_MIN_RATE", 500.0, validate=validate.Range(min=1)
)

# Redis is transport, the database is the source of truth. Unset, it is the embedded Redis that
# `manage.py up` (make run) starts, so commands run from another terminal reach the same queues.
PIXELMILL_REDIS_PORT = env.int("PIXELMILL_REDIS_PORT", 6390)
REDIS_URL = env.str("REDIS_URL", f"redis://127.0.0.1:{PIXELMILL_REDIS_PORT}/0")
RQ_QUEUES = {
    "control": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
# In-process jobs by default (see jobs/worker.py for why and what was measured); forking on request.
# A worker exits after this many jobs and `manage.py up` starts a fresh one, so memory cannot creep.
PIXELMILL_WORKER_MAX_JOBS = env.int("PIXELMILL_WORKER_MAX_JOBS", 1000)
# RQ workers (threads) per worker process: several provider calls in flight for one process's memory;
# local rendering still takes one CPU turn per process (jobs/cpu_gate.py).
PIXELMILL_WORKER_THREADS = env.int("PIXELMILL_WORKER_THREADS", 4)
# An idle worker waits on its queues at most this long between two heartbeats (RQ's own default is its TTL less
# 15 s, 405 s); a worker that Redis forgot (FLUSHALL, failover to an empty replica) registers again at its next.
PIXELMILL_WORKER_HEARTBEAT_SECONDS = env.int(
    "PIXELMILL_WORKER_HEARTBEAT_SECONDS", 15, validate=validate.Range(min=1, max=400)
)
RQ = {"WORKER_CLASS": env.str("PIXELMILL_WORKER_CLASS", "jobs.worker.PixelmillWorker")}
RQ_SHOW_ADMIN_LINK = False  # its admin entry checks only is_staff; the pages live at /admin/rq/
# `manage.py up` (make run): where the web server listens (PORT is the name hosting platforms set) and how
# many worker processes it starts; `manage.py process` runs its burst workers at their own log level.
PIXELMILL_PORT = env.int("PORT", 8000)
PIXELMILL_BIND = env.str("PIXELMILL_BIND", "127.0.0.1")
PIXELMILL_WORKERS = env.int("PIXELMILL_WORKERS", os.cpu_count() or 1)
PIXELMILL_WORKER_LOG_LEVEL = env.str("PIXELMILL_WORKER_LOG_LEVEL", "WARNING")

# Pixelmill's own settings.
PIXELMILL_MAX_ATTEMPTS = env.int("PIXELMILL_MAX_ATTEMPTS", 5)
# Every backoff (jobs/backoff.py): try n waits min(cap, base * FACTOR^(n-1)), less a random share of at most
# JITTER of it (0.5: between half and all of it), and never less than a Retry-After the other side sent.
# Tasks, generations and URL imports use RETRY_BASE/RETRY_MAX; provider calls and webhooks have their own.
PIXELMILL_BACKOFF_FACTOR = env.float("PIXELMILL_BACKOFF_FACTOR", 2.0, validate=validate.Range(min=1))
PIXELMILL_BACKOFF_JITTER = env.float("PIXELMILL_BACKOFF_JITTER", 0.5, validate=validate.Range(min=0, max=1))
PIXELMILL_RETRY_BASE_SECONDS = env.float("PIXELMILL_RETRY_BASE_SECONDS", 2.0)
PIXELMILL_RETRY_MAX_SECONDS = env.float("PIXELMILL_RETRY_MAX_SECONDS", 300.0)
# A wait handed back (rate limit, shared limits) is due after the wait plus a random extra of up to
# DEFERRAL_JITTER of it, at least DEFERRAL_MIN_JITTER_SECONDS, so the waiting tasks do not return at once.
PIXELMILL_DEFERRAL_JITTER = env.float("PIXELMILL_DEFERRAL_JITTER", 0.1, validate=validate.Range(min=0))
PIXELMILL_DEFERRAL_MIN_JITTER_SECONDS = env.float(
    "PIXELMILL_DEFERRAL_MIN_JITTER_SECONDS", 1.0, validate=validate.Range(min=0)
)
# A running task's worker renews its lease every third of this; a lease that expires means the worker died.
PIXELMILL_TASK_LEASE_SECONDS = env.float("PIXELMILL_TASK_LEASE_SECONDS", 60.0)
PIXELMILL_RECONCILE_INTERVAL_SECONDS = env.int("PIXELMILL_RECONCILE_INTERVAL_SECONDS", 30)
PIXELMILL_RECONCILE_GRACE_SECONDS = env.int("PIXELMILL_RECONCILE_GRACE_SECONDS", 60)
# RQ refreshes a started job's heartbeat every 30 s; a job silent for longer lost its whole worker.
PIXELMILL_STARTED_JOB_SILENCE_SECONDS = env.int("PIXELMILL_STARTED_JOB_SILENCE_SECONDS", 90)
PIXELMILL_MAX_UPLOAD_BYTES = env.int("PIXELMILL_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
PIXELMILL_MAX_PIXELS = env.int("PIXELMILL_MAX_PIXELS", 100_000_000)
# An upload whose check would decode more pixels than this (any image over it but a baseline JPEG, which is
# checked at 1/8 scale) is checked and added by a worker, never decoded in a web request; so is every zip.
PIXELMILL_WEB_DECODE_MAX_PIXELS = env.int("PIXELMILL_WEB_DECODE_MAX_PIXELS", 16_000_000)
PIXELMILL_ZIP_MAX_MEMBERS = env.int("PIXELMILL_ZIP_MAX_MEMBERS", 5000)
PIXELMILL_ZIP_MAX_TOTAL_BYTES = env.int("PIXELMILL_ZIP_MAX_TOTAL_BYTES", 4 * 1024**3)

# Import by URL: public addresses only, unless an operator trusts a network (e.g. "10.20.0.0/16").
PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS = env_list("PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS", "")
PIXELMILL_URL_IMPORT_TIMEOUT_SECONDS = env.float("PIXELMILL_URL_IMPORT_TIMEOUT_SECONDS", 10.0)
PIXELMILL_URL_IMPORT_MAX_URLS = env.int("PIXELMILL_URL_IMPORT_MAX_URLS", 5000)

# Providers: a call retries inside the attempt while the wait is short; a longer wait hands the task
# back to the scheduler instead of holding a worker.
PIXELMILL_PROVIDER_TRIES = env.int("PIXELMILL_PROVIDER_TRIES", 3)
PIXELMILL_PROVIDER_MAX_INLINE_WAIT = env.float("PIXELMILL_PROVIDER_MAX_INLINE_WAIT", 10.0)
PIXELMILL_PROVIDER_BACKOFF_SECONDS = env.float("PIXELMILL_PROVIDER_BACKOFF_SECONDS", 0.5)
PIXELMILL_PROVIDER_BACKOFF_MAX_SECONDS = env.float("PIXELMILL_PROVIDER_BACKOFF_MAX_SECONDS", 8.0)
PIXELMILL_MAX_DEFERRALS = env.int("PIXELMILL_MAX_DEFERRALS", 200)
# The circuit opens when, within one window, at least MIN_CALLS calls were made and FAILURE_RATE of them
# failed (5xx, timeouts, resets); it stays open OPEN_SECONDS.
PIXELMILL_BREAKER_WINDOW_SECONDS = env.int("PIXELMILL_BREAKER_WINDOW_SECONDS", 30)
PIXELMILL_BREAKER_MIN_CALLS = env.int("PIXELMILL_BREAKER_MIN_CALLS", 10)
PIXELMILL_BREAKER_FAILURE_RATE = env.float("PIXELMILL_BREAKER_FAILURE_RATE", 0.6)
PIXELMILL_BREAKER_OPEN_SECONDS = env.float("PIXELMILL_BREAKER_OPEN_SECONDS", 30.0)
# Campaign webhooks (signed POSTs when a run finishes): tries per delivery and the timeout of each try.
# The receiver's address passes the same public-address check as URL import.
PIXELMILL_WEBHOOK_MAX_ATTEMPTS = env.int("PIXELMILL_WEBHOOK_MAX_ATTEMPTS", 8)
PIXELMILL_WEBHOOK_TIMEOUT_SECONDS = env.float("PIXELMILL_WEBHOOK_TIMEOUT_SECONDS", 10.0)
# About 10 s, 20 s, 40 s … between tries; with 8 tries a receiver has roughly 20 minutes to come back.
PIXELMILL_WEBHOOK_RETRY_BASE_SECONDS = env.float("PIXELMILL_WEBHOOK_RETRY_BASE_SECONDS", 10.0)
PIXELMILL_WEBHOOK_RETRY_MAX_SECONDS = env.float("PIXELMILL_WEBHOOK_RETRY_MAX_SECONDS", 3600.0)
# A due delivery older than this lost its job (Redis emptied, enqueue failed) and the scheduler sends it again.
PIXELMILL_WEBHOOK_LOST_AFTER_SECONDS = env.float("PIXELMILL_WEBHOOK_LOST_AFTER_SECONDS", 60.0)
# Prometheus metrics (/metrics, dashboard/prometheus.py). Every Pixelmill process of a machine writes its figures
# to files in one folder (prometheus-client's multiprocess mode), summed at each scrape: gunicorn's workers,
# worker processes, forked work-horses. It must be in the environment before prometheus_client is imported.
# `manage.py up` (and compose's setup service) empty it before the processes start.
PROMETHEUS_MULTIPROC_DIR = env.path("PROMETHEUS_MULTIPROC_DIR", DATA_DIR / "prometheus")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
# Now, before any app: django-rq's admin creates a metric at import, and its file must already be named after
# this host as well as the pid (jobs/telemetry.py says why).
import jobs.telemetry  # noqa: E402, F401

# /metrics answers only a request bearing this token (Authorization: Bearer …); unset, /metrics is a 404.
PIXELMILL_METRICS_TOKEN = env.str("PIXELMILL_METRICS_TOKEN", "")
# /readyz gives up on a Redis that does not answer after this long, so it cannot hold a web thread.
PIXELMILL_HEALTH_REDIS_TIMEOUT_SECONDS = env.float("PIXELMILL_HEALTH_REDIS_TIMEOUT_SECONDS", 2.0)
# Public base URL of the dashboard (e.g. https://pixelmill.example.com) for links in webhook payloads;
# empty = paths only.
PIXELMILL_BASE_URL = env.str("PIXELMILL_BASE_URL", "")

# Estimates before Process and budget caps: the currency providers' prices are written in (a label only),
# and the task time assumed until tasks have been measured.
PIXELMILL_CURRENCY = env.str("PIXELMILL_CURRENCY", "USD")
PIXELMILL_ASSUMED_TASK_SECONDS = env.float("PIXELMILL_ASSUMED_TASK_SECONDS", 5.0)

# Generation from prompts (fal queue): a worker polls a submitted request every POLL_SECONDS for at most
# POLL_WINDOW_SECONDS, then frees itself and looks again RECHECK_SECONDS later. With a public base URL
# (e.g. https://pixelmill.example.com) fal also POSTs to our webhook when a request is done; empty = poll only.
PIXELMILL_GENERATION_POLL_SECONDS = env.float("PIXELMILL_GENERATION_POLL_SECONDS", 1.0)
PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = env.float("PIXELMILL_GENERATION_POLL_WINDOW_SECONDS", 30.0)
PIXELMILL_GENERATION_RECHECK_SECONDS = env.float("PIXELMILL_GENERATION_RECHECK_SECONDS", 5.0)
PIXELMILL_GENERATION_MAX_PROMPTS = env.int("PIXELMILL_GENERATION_MAX_PROMPTS", 500)
PIXELMILL_FAL_WEBHOOK_BASE_URL = env.str("PIXELMILL_FAL_WEBHOOK_BASE_URL", "")

LOG_LEVEL = env.str("PIXELMILL_LOG_LEVEL", "INFO")
PIXELMILL_RQ_LOG_LEVEL = env.str("PIXELMILL_RQ_LOG_LEVEL", "WARNING")
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
    # Share tokens and webhook secrets are redacted from every record the handler writes, whichever logger
    # it came from (django.request's "Not Found: <path>", ours); gunicorn's logs get the same filter.
    "filters": {"redact_secrets": {"()": "dashboard.redaction.RedactSecrets"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact_secrets"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        **{name: {"level": PIXELMILL_RQ_LOG_LEVEL} for name in ("rq.worker", "rq.cron", "rq.scheduler")},
        # httpx logs every URL at INFO, and providers hand out signed result URLs: keep them out of logs.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

check_environment()
