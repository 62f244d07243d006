"""Served by WSGI (Django's ``manage.py runserver``, gunicorn's sync workers), a request never
goes through the middleware, which only an ASGI server runs: what of the package the app still
calls says how to serve it over ASGI, instead of an ``AttributeError`` about ``scope``.

The example Django project (``examples/django_app``) is driven by Django's own test client,
which calls the project through Django's WSGI handler, as ``runserver`` does. It runs in a
subprocess: Django's settings are set up once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from _servers import ROOT
from asgi_wechat_oauth import login_url

pytest.importorskip("django", reason="Django is in the test extra")

SCRIPT = """
import json

import django
from django.test import Client, RequestFactory

django.setup()
from asgi_wechat_oauth import login_url

answers = {}
request = RequestFactory().get("/")
answers["request"] = type(request).__name__
try:
    login_url(request, next="/")
except Exception as exc:
    answers["factory"] = [type(exc).__name__, str(exc)]
try:
    Client().get("/")  # the example's home page calls login_url(request, ...)
except Exception as exc:
    answers["client"] = [type(exc).__name__, str(exc)]
print(json.dumps(answers))
"""


def test_login_url_under_wsgi_says_to_serve_asgi_py_with_uvicorn():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert answers["request"] == "WSGIRequest"
    for where in ("factory", "client"):
        kind, message = answers[where]
        assert kind == "LookupError", message
        assert "'scope'" not in message
        assert "login_url() got a WSGI request" in message
        assert "manage.py runserver" in message
        # The project's own ASGI application, named from its settings module.
        assert message.endswith("such as uvicorn: uvicorn examples.django_app.asgi:application")


class _WSGIRequest:
    """A WSGI framework's request (Flask's, Django's): an ``environ``, no ``scope``."""

    def __init__(self) -> None:
        self.environ = {"wsgi.version": (1, 0), "REQUEST_METHOD": "GET", "PATH_INFO": "/"}


def test_any_wsgi_request_names_an_asgi_server(monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    with pytest.raises(LookupError, match=r"WSGI request.*uvicorn mysite\.asgi:application"):
        login_url(_WSGIRequest())


def test_something_that_is_no_request_is_a_type_error():
    with pytest.raises(TypeError, match="takes a request with an ASGI scope"):
        login_url(object())  # type: ignore[arg-type]
