"""Django settings of the django-oauth-toolkit (DOT) test authorization server.

Configuration only: every OAuth behaviour is DOT's own. server.py sets the
run-time values below (issuer, database path) in the environment before Django
starts; the OIDC signing key and the Django secret key are made here, fresh at
every start, and never leave the process.
"""

import os
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = os.environ["TW_DOT_ISSUER"]  # http://127.0.0.1:<port>/o
ACCESS_TOKEN_TTL = int(os.environ.get("TW_ACCESS_TOKEN_TTL", "5"))
DEBUG_LOG = bool(os.environ.get("TW_DOT_DEBUG"))  # logs to stderr when set

SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False  # never an error page that shows settings or request data
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "twdot.urls"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
]

# No CsrfViewMiddleware: a loopback test server, driven by a headless browser
# that posts forms (DOT's own OAuth endpoints are csrf-exempt anyway).
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# Sessions in signed cookies: no sessions table, no writes.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
LOGIN_URL = "/test/login/"
STATIC_URL = "/static/"  # DOT's page templates link a stylesheet (never served)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Ours first: the sign-in page, and DOT's device approval page redone.
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["TW_DOT_DB"],  # in a fresh temporary directory
        "OPTIONS": {
            # The server is threaded: wait for the lock instead of failing, and
            # take it at the start of each transaction (DOT reads, then writes,
            # when it rotates a refresh token), which SQLite cannot upgrade safely.
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A cheap hasher for alice's password: hashing it at each start with Django's
# default (PBKDF2, a million rounds) would cost about a second per start and per
# password grant. Client secrets are stored unhashed (hash_client_secret=False).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


OAUTH2_PROVIDER = {
    "SCOPES": {"openid": "OpenID Connect", "read": "Read", "write": "Write"},
    "DEFAULT_SCOPES": ["read", "write"],  # when a request names no scope
    "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_TTL,
    "ID_TOKEN_EXPIRE_SECONDS": 3600,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 3600,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    # Every refresh returns a new refresh token and revokes the one it used; a
    # revoked one sent again revokes its whole family (RFC 9700 §4.14.2).
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    # RFC 8252 §7.3: DOT allows any port on an http://127.0.0.1 redirect URI.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    # OpenID Connect, ID tokens signed RS256 with a key made at each start.
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": _rsa_key(),
    # Device flow (RFC 8628): the page where the user enters the code.
    "OAUTH_DEVICE_VERIFICATION_URI": f"{ISSUER}/device/",
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": f"{ISSUER}/device/?user_code={{user_code}}",
    "DEVICE_FLOW_INTERVAL": 1,  # seconds between polls: quick tests
    # RFC 9700 gates: the compliant behaviour, except for the password grant,
    # which the tests use.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,  # S256 only
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,  # RFC 9207 `iss`
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["stderr" if DEBUG_LOG else "null"], "level": "DEBUG" if DEBUG_LOG else "CRITICAL"},
    "loggers": {
        "django": {"propagate": True, "level": "INFO"},
        "django.db.backends": {"level": "INFO"},  # not every SQL statement
    },
}
