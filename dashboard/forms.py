"""Forms for the marketer's pages."""

from __future__ import annotations

from django import forms

from dashboard.models import Campaign, Recipe, Team


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Django's documented pattern for a field that takes several files at once."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*,.zip", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


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


class UploadForm(forms.Form):
    files = MultipleFileField(label="Images or .zip archives")


class ProcessForm(forms.Form):
    recipes = forms.ModelMultipleChoiceField(
        queryset=Recipe.objects.filter(is_active=True),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one recipe to process."},
    )
