"""Template filters for what a marketer reads: durations, money, the cause of a failure."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.conf import settings

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
