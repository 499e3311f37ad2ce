"""Confirm, then act: a page asks on GET, the action happens on POST, then a message and a redirect."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View


@dataclass(frozen=True)
class Confirmation:
    """What a confirm page says: the question, what will happen, and the button that does it."""

    title: str
    question: str
    consequence: str
    button: str
    back_url: str
    back_label: str = "Cancel"
    ready: bool = True  # False greys the button out: there is nothing to act on
    options_template: str = ""  # choices shown in the form above the button, given `options`
    options: Mapping[str, object] = field(default_factory=dict)
    wide: bool = False


class ConfirmThenActView(View):
    """Confirm on GET, act on POST, as django-rq and Django's admin actions do. A subclass finds what the
    page is about in `load` (404 for what the user may not see, before either), says what the page asks
    in `confirmation`, and in `act` does the work, leaves its messages and returns the redirect."""

    http_method_names = ["get", "post"]  # anything else is a 405, as with require_http_methods
    template_name = "dashboard/confirm.html"

    def load(self) -> None:
        raise NotImplementedError

    def confirmation(self) -> Confirmation:
        raise NotImplementedError

    def act(self) -> HttpResponse:
        raise NotImplementedError

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        self.load()
        return self.confirm_page()

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        self.load()
        return self.act()

    def confirm_page(self) -> HttpResponse:
        return render(
            self.request,
            self.template_name,
            {"confirmation": self.confirmation(), "action": self.request.get_full_path()},
        )
