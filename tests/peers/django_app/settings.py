"""Settings of the test's Django app (one file, everything from the environment):

  OIDC_ISSUER         gatehouse's issuer, e.g. http://127.0.0.1:8080/sso (required)
  OIDC_RP_CLIENT_ID   the app's client id      } serve.py reads them from stdin when
  OIDC_RP_CLIENT_SECRET  and client secret     } they are not set
  DJANGO_DATA_DIR     where the SQLite database goes (required)

The endpoints are gatehouse's, under the issuer (as its discovery document lists them).
"""

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "mozilla_django_oidc",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path(os.environ["DJANGO_DATA_DIR"]) / "django.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# gatehouse runs on the same host (another port): cookies do not care about ports, so keep
# Django's names apart from gatehouse's.
SESSION_COOKIE_NAME = "django_sessionid"
CSRF_COOKIE_NAME = "django_csrftoken"

AUTHENTICATION_BACKENDS = ["views.GatehouseBackend"]
LOGIN_REDIRECT_URL = "/"
LOGIN_REDIRECT_URL_FAILURE = "/?failed=1"
LOGOUT_REDIRECT_URL = "/"

# mozilla-django-oidc: a confidential client (client_secret_basic), PKCE S256, a nonce,
# RS256 ID tokens checked against gatehouse's JWKS.
OIDC_ISSUER = os.environ["OIDC_ISSUER"].rstrip("/")
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = OIDC_ISSUER + "/oauth2/authorize"
OIDC_OP_TOKEN_ENDPOINT = OIDC_ISSUER + "/oauth2/token"
OIDC_OP_USER_ENDPOINT = OIDC_ISSUER + "/oauth2/userinfo"
OIDC_OP_JWKS_ENDPOINT = OIDC_ISSUER + "/oauth2/jwks"
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TOKEN_USE_BASIC_AUTH = True
OIDC_TIMEOUT = 10

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "WARNING"},
        "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "mozilla_django_oidc": {"handlers": ["stderr"], "level": "DEBUG"},
    },
}
