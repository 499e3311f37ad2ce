"""Template filters for what a marketer reads: durations, money, the cause of a failure."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.conf import settings

from dashboard.causes import cause_for
from dashboard.estimates import describe_money, describe_seconds

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
