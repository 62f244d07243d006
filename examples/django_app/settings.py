"""Django settings of the example: a minimal project, Django's defaults where it matters.

``APPEND_SLASH`` is left at its default (``True``) and the routes end with a slash, as in most
Django projects. Sessions are signed cookies, so the example needs no database.
"""

from __future__ import annotations

import os

from django.core.management.utils import get_random_secret_key

# Random per process when unset: sessions then end with the process. Set it in production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",  # APPEND_SLASH's redirects
    "django.contrib.sessions.middleware.SessionMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_SAMESITE = "Lax"  # the callback is a top-level navigation from WeChat: Lax sends it
SESSION_COOKIE_SECURE = False  # True in production (https only)
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
