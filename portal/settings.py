"""Settings for every deployment, read from the environment (see README "Environment").

No DATABASE_URL / REDIS_URL: the embedded default — SQLite in WAL mode, an in-process channel
layer and a Celery worker inside the portal process on an in-memory broker. With them: PostgreSQL,
and Redis for the Celery broker, results, the channel layer and the cache, each in its own
logical database.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal.crypto import check_keys
from portal.env import env_bool, env_int, env_list, env_str, env_url, redis_database

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key only ever serves the embedded default on loopback; `check --deploy` flags it.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "django-insecure-embedded-default-do-not-deploy")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: /api/docs/ works offline
    "channels",
    "accounts",
    "members",
    "tasks",
    "monitor",
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
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

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
                "accounts.context_processors.role",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # One test database per test run, so runs side by side on one server never collide.
        test_name = f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
        DATABASES["default"]["TEST"] = {"NAME": test_name}
        # Under ASGI each request runs on its own thread, so persistent connections are never
        # reused; a pool is (bench/api.py: p50 of a mirror detail 16.8 ms -> 6.8 ms).
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("PORTAL_DB_POOL_MIN", 2, minimum=0),
            "max_size": env_int("PORTAL_DB_POOL_MAX", 10, minimum=1),
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "portal.sqlite3",
            "OPTIONS": {
                # WAL lets the in-process worker write job progress while pages read.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not :memory:, so the worker thread and test threads share the test data;
            # one per test run, so runs side by side in one checkout never share it.
            "TEST": {"NAME": str(VAR_DIR / f"test-portal-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, results, channel layer, cache ---------------------------------------------
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss"))
if REDIS_URL:
    CELERY_BROKER_URL = redis_database(REDIS_URL, env_int("REDIS_DB_BROKER", 0, minimum=0))
    CELERY_RESULT_BACKEND = redis_database(REDIS_URL, env_int("REDIS_DB_RESULTS", 1, minimum=0))
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [redis_database(REDIS_URL, env_int("REDIS_DB_CHANNELS", 2, minimum=0))]
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_database(REDIS_URL, env_int("REDIS_DB_CACHE", 3, minimum=0)),
        }
    }
else:
    CELERY_BROKER_URL = "memory://"
    # kombu's in-memory transport sleeps polling_interval (1 s by default) whenever its queue is
    # empty, which made every embedded job wait up to a second before it ran (bench/workflow.py)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}
    CELERY_RESULT_BACKEND = "cache+memory://"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# An in-memory broker is only reachable from inside this process, so the worker must live here too.
PORTAL_EMBEDDED_WORKER = env_bool("PORTAL_EMBEDDED_WORKER", not REDIS_URL)
PORTAL_EMBEDDED_CONCURRENCY = env_int("PORTAL_EMBEDDED_CONCURRENCY", 2, minimum=1)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Live monitor (docs/monitor.md) -----------------------------------------------------------
# The collector follows every agent's status stream; with no separate `manage.py runmonitor`
# (the embedded default) it runs inside the portal process.
PORTAL_EMBEDDED_MONITOR = env_bool("PORTAL_EMBEDDED_MONITOR", not REDIS_URL)
MONITOR_LEASE_S = env_int("MONITOR_LEASE_S", 3, minimum=1)
MONITOR_SAMPLE_S = env_int("MONITOR_SAMPLE_S", 5, minimum=1)
MONITOR_SAMPLE_KEEP_S = env_int("MONITOR_SAMPLE_KEEP_S", 3600, minimum=60)
MONITOR_RECONNECT_MAX_S = env_int("MONITOR_RECONNECT_MAX_S", 5, minimum=1)
# alert rules: thresholds (docs/monitor.md "Alerts")
MONITOR_BACKUP_NOT_ACTIVE_S = env_int("MONITOR_BACKUP_NOT_ACTIVE_S", 30, minimum=0)
MONITOR_ASYNC_LAG_S = env_int("MONITOR_ASYNC_LAG_S", 60, minimum=0)
MONITOR_CERT_EXPIRY_DAYS = env_int("MONITOR_CERT_EXPIRY_DAYS", 14, minimum=0)
# how long a takeover (a member's role becoming primary) stays an open alert
MONITOR_TAKEOVER_ALERT_S = env_int("MONITOR_TAKEOVER_ALERT_S", 900, minimum=0)
# webhooks that receive alerts (JSON POST), comma-separated
MONITOR_WEBHOOK_URLS = env_list("MONITOR_WEBHOOK_URLS", [])
MONITOR_WEBHOOK_TIMEOUT_S = env_int("MONITOR_WEBHOOK_TIMEOUT_MS", 3000, minimum=1) / 1000

# --- Auth, API --------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "mirror-list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": ["portal.api.StrictJSONParser"],
    # JSON only: the browsable API's HTML renderer read a request's body while rendering, after
    # the view had acted, so a non-JSON body made a 500 for a change already applied
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.Pagination",
    "PAGE_SIZE": env_int("PORTAL_API_PAGE_SIZE", 50, minimum=1),
    "DEFAULT_SCHEMA_CLASS": "portal.api.PortalAutoSchema",
    "EXCEPTION_HANDLER": "portal.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Mirror Portal API",
    "DESCRIPTION": "Create mirrors, join and authorize members, add databases, run jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["accounts.permissions.AnyMirrorRole"],
    "SERVE_AUTHENTICATION": None,
    "COMPONENT_SPLIT_REQUEST": True,
    # failover_* and async_* compression fields share one choice set each.
    "ENUM_NAME_OVERRIDES": {
        "CompressionModeEnum": "members.rules.COMPRESSION_MODES",
        "CompressionTypeEnum": "members.rules.COMPRESSION_TYPES",
        "RoleEnum": "accounts.roles.ROLES",
        "PortalRoleEnum": "accounts.roles.PORTAL_ROLES",
    },
}

# --- Security ---------------------------------------------------------------------------------
HTTPS = env_bool("PORTAL_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SESSION_COOKIE_HTTPONLY = True

# --- Static, i18n, logging --------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Agent calls (e.g. the "check host" job) give up after this long.
PORTAL_AGENT_TIMEOUT_S = env_int("PORTAL_AGENT_TIMEOUT_MS", 3000, minimum=1) / 1000
# The longest a job waits for the members to show an outcome (a join, a catch-up) unless the
# request names its own bound; past it the job fails with the last status seen.
PORTAL_JOB_WAIT_S = env_int("PORTAL_JOB_WAIT_S", 120, minimum=1)
# The web listener's limits (portal/listener.py, docs/hardening.md "Portal listener limits"): a
# request head whole this long after connecting, a body this long after its head, and no more
# connections than this open at once (websockets count).
PORTAL_HTTP_HEADER_TIMEOUT_S = env_int("PORTAL_HTTP_HEADER_TIMEOUT_MS", 10_000, minimum=100) / 1000
# An unfinished request head larger than this is answered 431 (the parser holds it whole).
PORTAL_HTTP_MAX_HEAD_BYTES = env_int("PORTAL_HTTP_MAX_HEAD_BYTES", 65_536, minimum=1024)
PORTAL_HTTP_BODY_TIMEOUT_S = env_int("PORTAL_HTTP_BODY_TIMEOUT_MS", 30_000, minimum=100) / 1000
PORTAL_HTTP_MAX_CONNECTIONS = env_int("PORTAL_HTTP_MAX_CONNECTIONS", 500, minimum=1)
# ... and from one address: one host cannot take them all (behind a proxy, every connection
# comes from the proxy: raise it to PORTAL_HTTP_MAX_CONNECTIONS there).
PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER = env_int(
    "PORTAL_HTTP_MAX_CONNECTIONS_PER_PEER", 200, minimum=1
)
# The portal's client certificate for agents that require mutual TLS: all three or none.
_agent_tls = {k: env_str(f"PORTAL_AGENT_TLS_{k.upper()}") for k in ("cert", "key", "ca")}
if any(_agent_tls.values()) and not all(_agent_tls.values()):
    raise ImproperlyConfigured(
        "PORTAL_AGENT_TLS_CERT, PORTAL_AGENT_TLS_KEY and PORTAL_AGENT_TLS_CA go together"
    )
PORTAL_AGENT_TLS = _agent_tls if all(_agent_tls.values()) else None
# Fernet keys that encrypt the secrets the portal keeps (agent credentials), comma-separated:
# the first encrypts, all decrypt (portal/crypto.py, docs/hardening.md). Required in production,
# recognised as `check --deploy` recognises it: DJANGO_SECRET_KEY is set. The embedded default
# generates one key into VAR_DIR/secret-keys.
PORTAL_SECRET_KEYS = check_keys(
    env_list("PORTAL_SECRET_KEYS", []), production=bool(env_str("DJANGO_SECRET_KEY"))
)

# Every line names its level and logger, as uvicorn's lines name theirs: on stderr, an INFO
# line (a Celery task's outcome, the worker's broker connection) then reads as the normal
# information it is, and a WARNING or ERROR stands out.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"levelled": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "filters": {"in_memory_broker": {"()": "portal.celery.InMemoryBrokerHasNoHost"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "levelled"}},
    "loggers": {"kombu.connection": {"filters": ["in_memory_broker"]}},
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO")},
}
