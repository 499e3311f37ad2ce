"""The login pages' guard (django-axes): the address a failed login is counted against, and the page a login
from a locked-out user name and address gets instead of the form."""

from __future__ import annotations

import ipaddress
import math

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def client_address(request: HttpRequest) -> str | None:
    """The client's address; behind our proxy (PIXELMILL_BEHIND_PROXY), the last one in X-Forwarded-For, which the
    proxy appended. Any before it came from the client, which could otherwise pick a fresh address per try."""
    if settings.PIXELMILL_BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass  # no proxy header (a health check from inside): the connection's own address
    return request.META.get("REMOTE_ADDR")


def locked_out(request: HttpRequest, credentials: dict | None = None) -> HttpResponse:
    """429 with when to try again and who can unlock sooner, on either login page (AXES_LOCKOUT_CALLABLE)."""
    username = get_client_username(request, credentials) or ""
    # The cool-off runs from the last wrong password; tries while locked out do not extend it.
    last_failure = AccessAttempt.objects.filter(
        username=username, ip_address=getattr(request, "axes_ip_address", None)
    ).aggregate(last=Max("attempt_time"))["last"]
    until = (last_failure or timezone.now()) + get_cool_off(request)
    minutes = max(
        1, math.ceil((until - timezone.now()).total_seconds() / 60)
    )  # 14:59 left reads "15 minutes"
    context = {
        "username": username,
        "until": until,
        "minutes": minutes,
        "failure_limit": settings.AXES_FAILURE_LIMIT,
    }
    return render(request, "registration/locked_out.html", context, status=429)
