"""Template filters for what a marketer reads: durations, money, the cause of a failure."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.conf import settings

from dashboard.causes import cause_for
from dashboard.estimates import describe_seconds

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    return "–" if seconds is None else describe_seconds(seconds)


@register.filter
def money(amount: Decimal | float | None) -> str:
    """“12.40 USD”; a price per call can hold fractions of a cent, which are kept (“0.0125 USD”)."""
    if amount is None:
        return "–"
    amount = Decimal(amount)
    places = 2 if amount == amount.quantize(Decimal("0.01")) else 4
    return f"{amount:,.{places}f} {settings.PIXELMILL_CURRENCY}"


@register.simple_tag
def currency() -> str:
    return settings.PIXELMILL_CURRENCY


@register.filter
def cause_label(error_code: str) -> str:
    return cause_for(error_code or "").label
