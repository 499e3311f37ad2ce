"""Forms for the marketer's pages."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from dashboard.estimates import describe_money
from dashboard.ids import parse_id
from dashboard.models import Campaign, Provider, Recipe, Team
from dashboard.prompts import (
    MAX_IMAGES_PER_PROMPT,
    PromptList,
    PromptSpec,
    check_image_size,
    read_prompt_csv,
    read_prompt_lines,
)
from jobs.operations import OPERATIONS
from jobs.providers import KIND_OPERATIONS, supports
from jobs.providers.fal import ImageSizeError
from jobs.public_addresses import address_problem, parse_networks


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = ["name", "team"]

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        teams = Team.objects.all() if user.is_superuser else Team.objects.filter(members=user)
        self.fields["team"].queryset = teams
        self.fields["team"].empty_label = None
        if teams.count() == 1:
            self.fields["team"].widget = forms.HiddenInput()
            self.initial["team"] = teams.first().pk


class WebhookForm(forms.ModelForm):
    """The campaign's webhook URL; empty turns the webhook off. The address is checked again at each try."""

    webhook_url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=200,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        error_messages={"invalid": "Enter a full http:// or https:// URL."},
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/pixelmill"}),
    )

    class Meta:
        model = Campaign
        fields = ["webhook_url"]

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"].strip()
        if not url:
            return ""
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise forms.ValidationError(
                "Leave the user name and password out of the URL; check the Pixelmill-Signature header instead."
            )
        # Only a literal address can be judged here; a name is resolved and checked at every try.
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname or ""
        try:
            allowed = parse_networks(settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS)
            problem = address_problem(ipaddress.ip_address(host), allowed)
        except ValueError:
            problem = None
        if problem:
            raise forms.ValidationError(f"Webhooks go only to public addresses; this one {problem}.")
        return url


class ModelIdsField(forms.ModelMultipleChoiceField):
    """Rows picked by id: an id no row can have (past the database's integer, "²") is an invalid choice like
    a missing row, instead of a query that overflows in the database."""

    def _check_values(self, value):
        for pk in value:
            if parse_id(pk) is None:
                raise ValidationError(
                    self.error_messages["invalid_choice"], code="invalid_choice", params={"value": pk}
                )
        return super()._check_values(value)


class ProcessForm(forms.Form):
    recipes = ModelIdsField(
        queryset=Recipe.objects.filter(is_active=True),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one recipe to process."},
    )


class EstimateForm(forms.Form):
    """The Process form's recipes, read to estimate rather than to run, and a deadline to plan workers for."""

    recipes = ModelIdsField(queryset=Recipe.objects.filter(is_active=True), required=False)
    deadline = forms.DateTimeField(
        required=False,
        label="Finish by",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": "Enter a date and time, e.g. 2026-12-24 17:00."},
    )


class BudgetForm(forms.ModelForm):
    """The campaign's budget cap for provider calls; empty means no cap."""

    class Meta:
        model = Campaign
        fields = ["budget_cap"]
        labels = {"budget_cap": "Budget cap"}
        widgets = {
            "budget_cap": forms.NumberInput(attrs={"step": "0.01", "min": "0", "placeholder": "no cap"})
        }

    def clean_budget_cap(self):
        cap = self.cleaned_data["budget_cap"]
        if cap is not None and cap < 0:
            raise forms.ValidationError("A budget cap cannot be negative; leave it empty for no cap.")
        return cap


class RequeueForm(forms.Form):
    """How to requeue a group of failures: as they were, on the current recipe versions, and/or with a
    failing step sent to another provider (or to our own workers)."""

    LOCAL = "local"

    version = forms.ChoiceField(
        label="Recipe version",
        choices=[("same", "The version each one ran"), ("current", "The current version of its recipe")],
        initial="same",
        required=False,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, steps: Iterable[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        providers = list(Provider.objects.filter(is_active=True).exclude(kind=Provider.Kind.FAL))
        self.provider_names = {p.slug: p.name for p in providers}
        for operation in steps:
            if not any(supports(kind, operation) for kind in KIND_OPERATIONS):
                continue  # decode, render, a watermark: nothing but our workers can do those
            choices = [("", "As the recipe says"), (self.LOCAL, "Our workers (no provider, no cost)")]
            choices += [
                (p.slug, f"{p.name} ({describe_money(p.price_per_call)} a call)")
                for p in providers
                if supports(p.kind, operation)
            ]
            self.fields[f"provider_{operation}"] = forms.ChoiceField(
                label=f"Run {OPERATIONS[operation].label.lower()} with", choices=choices, required=False
            )

    @property
    def provider_fields(self) -> list:
        return [self[name] for name in self.fields if name.startswith("provider_")]

    def provider_overrides(self) -> dict[str, str | None]:
        chosen = {
            name.removeprefix("provider_"): value
            for name, value in self.cleaned_data.items()
            if name.startswith("provider_") and value
        }
        return {operation: None if value == self.LOCAL else value for operation, value in chosen.items()}

    def describe_overrides(self) -> list[str]:
        """“remove background with Photoroom”, one per overridden step, for the confirmation message."""
        return [
            f"{OPERATIONS[operation].label.lower()} with {self.provider_names[slug] if slug else 'our workers'}"
            for operation, slug in self.provider_overrides().items()
        ]


class GenerateForm(forms.Form):
    """Prompts typed one per line and/or a CSV (prompt, seed, image_size, num_images; header optional)."""

    MAX_CSV_BYTES = 2 * 1024 * 1024
    ERRORS_SHOWN = 30

    prompts = forms.CharField(
        label="Prompts, one per line",
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "placeholder": "red sneakers on a sunny beach, studio light\nA cozy cabin in snowy woods",
            }
        ),
    )
    csv_file = forms.FileField(
        label="…or a CSV file (prompt, seed, image_size, num_images)",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    provider = forms.ModelChoiceField(
        queryset=Provider.objects.filter(kind=Provider.Kind.FAL, is_active=True), empty_label=None
    )
    image_size = forms.CharField(
        label="Image size",
        initial="square_hd",
        max_length=40,
        help_text="A preset such as square_hd or landscape_16_9, or WIDTHxHEIGHT such as 1024x768.",
        widget=forms.TextInput(attrs={"list": "fal-image-sizes"}),
    )
    num_images = forms.IntegerField(
        label="Images per prompt",
        initial=1,
        min_value=1,
        max_value=MAX_IMAGES_PER_PROMPT,
        error_messages={
            "min_value": f"Images per prompt must be 1 to {MAX_IMAGES_PER_PROMPT}.",
            "max_value": f"Images per prompt must be 1 to {MAX_IMAGES_PER_PROMPT}.",
        },
    )

    def clean_image_size(self) -> str:
        try:
            return check_image_size(self.cleaned_data["image_size"])
        except ImageSizeError as error:
            raise forms.ValidationError(f"The {error}.") from error

    def clean_csv_file(self) -> str:
        upload = self.cleaned_data.get("csv_file")
        if not upload:
            return ""
        data = upload.read(self.MAX_CSV_BYTES + 1)
        if len(data) > self.MAX_CSV_BYTES:
            raise forms.ValidationError(
                f"The CSV file is larger than {self.MAX_CSV_BYTES // (1024 * 1024)} MB."
            )
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise forms.ValidationError("The CSV file is not UTF-8 text; save it as “CSV UTF-8”.") from error

    def clean(self) -> dict:
        cleaned = super().clean()
        if "image_size" not in cleaned or "num_images" not in cleaned:
            return cleaned  # the defaults themselves are wrong; those errors say so
        default = PromptSpec(prompt="", image_size=cleaned["image_size"], num_images=cleaned["num_images"])
        found = PromptList()
        read_prompt_lines(cleaned.get("prompts") or "", default, found)
        read_prompt_csv(cleaned.get("csv_file") or "", default, found)
        limit = settings.PIXELMILL_GENERATION_MAX_PROMPTS
        total = len(found.specs) + len(found.errors)
        if total > limit:
            raise forms.ValidationError(f"At most {limit} prompts at once; this list has {total}.")
        if found.errors:
            shown = found.errors[: self.ERRORS_SHOWN]
            if len(found.errors) > len(shown):
                shown.append(f"…and {len(found.errors) - len(shown)} more lines with problems.")
            raise forms.ValidationError(shown)
        if not found.specs:
            raise forms.ValidationError("Write at least one prompt, or choose a CSV file of prompts.")
        cleaned["specs"] = found.specs
        return cleaned


SHARE_LINK_DAYS = [(1, "1 day"), (7, "7 days"), (30, "30 days")]


class ShareLinkForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Who is it for? (optional)"}),
    )
    days = forms.TypedChoiceField(choices=SHARE_LINK_DAYS, coerce=int, initial=7, label="Works for")
