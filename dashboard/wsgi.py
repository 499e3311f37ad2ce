"""WSGI entry point (gunicorn -c python:dashboard.gunicorn_config dashboard.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from dashboard.slow_clients import SlowBodyGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
application = SlowBodyGuard(get_wsgi_application())
