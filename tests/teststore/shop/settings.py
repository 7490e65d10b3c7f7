"""Settings of the django-oscar test store (tests only: fixed secret, fast hasher, loopback).

Read from the environment: SHOP_DB (SQLite file, required outside `manage.py check`) and
SHOP_PAGE_SIZE (page size of every list endpoint, default 50, so connectors must paginate).
See ../../../shared/PLATFORMS.md section 1 for why each non-default line is here.
"""

import os
from pathlib import Path

from oscar import INSTALLED_APPS as OSCAR_INSTALLED_APPS
from oscar.defaults import *  # noqa: F403 - Oscar's settings module is meant to be star-imported

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "storeops-teststore-not-a-secret-only-for-tests-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    *OSCAR_INSTALLED_APPS,
    "rest_framework",
    "rest_framework.authtoken",
    "oscarapi",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # replaces SessionMiddleware: accepts the "Session-Id" header of API clients
    "oscarapi.middleware.HeaderSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
    # replaces Oscar's BasketMiddleware
    "oscarapi.middleware.ApiBasketMiddleWare",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "shop.sqlite3")),
        "OPTIONS": {
            # Two gunicorn workers write to one file: IMMEDIATE makes every atomic block
            # take the write lock up front, so they queue instead of failing with
            # "database is locked" when a read transaction turns into a write.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

AUTHENTICATION_BACKENDS = (
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
)
# Test data only: PBKDF2 costs ~220 ms per Basic-auth request (PLATFORMS.md P10).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # Django's default is America/Chicago (PLATFORMS.md P9)
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
MEDIA_ROOT = BASE_DIR / "media"
MEDIA_URL = "/media/"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

REST_FRAMEWORK = {
    # Token first: Basic re-hashes the password on every request.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": int(os.environ.get("SHOP_PAGE_SIZE", "50")),
}

OSCARAPI_BLOCK_ADMIN_API_ACCESS = False  # default True: every /api/admin/* is a 404
OSCARAPI_INITIAL_ORDER_STATUS = "Pending"

OSCAR_DEFAULT_CURRENCY = "USD"
OSCAR_ALLOW_ANON_CHECKOUT = True
OSCAR_INITIAL_ORDER_STATUS = "Pending"
OSCAR_INITIAL_LINE_STATUS = "Pending"
OSCAR_ORDER_STATUS_PIPELINE = {
    "Pending": ("Being processed", "Cancelled"),
    "Being processed": ("Shipped", "Cancelled"),
    "Shipped": ("Complete",),
    "Complete": (),
    "Cancelled": (),
}
OSCAR_LINE_STATUS_PIPELINE = OSCAR_ORDER_STATUS_PIPELINE
OSCAR_ORDER_STATUS_CASCADE = {
    "Being processed": "Being processed",
    "Shipped": "Shipped",
    "Cancelled": "Cancelled",
}
