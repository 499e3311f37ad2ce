"""Template filters for what a marketer reads (durations, money, the cause of a failure) and cheap links by id."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from django import template
from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from dashboard.causes import cause_for, describe_code
from dashboard.estimates import describe_money, describe_seconds
from jobs.operations import OPERATIONS

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    return "–" if seconds is None else describe_seconds(seconds)


@register.filter
def money(amount: Decimal | float | None) -> str:
    return "–" if amount is None else describe_money(amount)


@register.simple_tag
def currency() -> str:
    return settings.PIXELMILL_CURRENCY


@register.filter
def cause_label(error_code: str) -> str:
    return cause_for(error_code or "").label


@register.filter
def code_label(error_code: str) -> str:
    return describe_code(error_code or "")


# Where a task stood when it failed, besides the recipe's own operations (jobs/tasks.py, jobs/rendering.py).
STEP_LABELS = {
    "load": "Loading",
    "decode": "Reading the file",
    "render": "Making the outputs",
    "store": "Saving",
}


@register.filter
def step_label(step: str) -> str:
    """The recipe step (or stage) a task failed at, in the words the admin's recipe form uses."""
    if not step:
        return "–"
    operation = OPERATIONS.get(step)
    return operation.label if operation else STEP_LABELS.get(step, step.replace("_", " ").capitalize())


# Stand-in ids no real path holds: reversed once, then replaced by the real ids.
STAND_IN_IDS = ("8642097531", "8642097532", "8642097533")


@register.simple_tag
def id_url(name: str, *ids: int) -> str:
    """`{% url name id %}` for links repeated per row: the gallery's 24 tiles make about 200 links, and
    reversing each one walked the resolver (a fifth of the page's template time)."""
    return _id_url_format(name, len(ids), get_script_prefix(), get_urlconf()).format(*map(int, ids))


@lru_cache(maxsize=64)
def _id_url_format(name: str, count: int, script_prefix: str, urlconf: str | None) -> str:
    """The reversed URL as a format string; the script prefix and URLconf are in the key because reverse()
    reads them per request."""
    url = reverse(name, urlconf=urlconf, args=STAND_IN_IDS[:count])
    url = url.replace("{", "{{").replace("}", "}}")
    for position, stand_in in enumerate(STAND_IN_IDS[:count]):
        url = url.replace(stand_in, f"{{{position}}}")
    return url
