"""Pixelmill's models, one module per concern; import them from here: `from dashboard.models import Task`."""

from dashboard.models.attempts import AttemptLog, AttemptModel, AttemptQuerySet
from dashboard.models.campaigns import Campaign, CampaignQuerySet, Team
from dashboard.models.delivery import WebhookDelivery
from dashboard.models.intake import DeferredUpload, Generation, SourceImage, UrlImport
from dashboard.models.outputs import Output, OutputQuerySet
from dashboard.models.providers import Provider, StepResult
from dashboard.models.recipes import (
    Recipe,
    RecipeOutput,
    RecipeStep,
    RecipeUpdate,
    RecipeVersion,
    build_steps,
    remote_calls,
)
from dashboard.models.sharing import ShareLink, ShareLinkQuerySet
from dashboard.models.tasks import Progress, Task, TaskQuerySet

__all__ = [
    "AttemptLog",
    "AttemptModel",
    "AttemptQuerySet",
    "Campaign",
    "CampaignQuerySet",
    "DeferredUpload",
    "Generation",
    "Output",
    "OutputQuerySet",
    "Progress",
    "Provider",
    "Recipe",
    "RecipeOutput",
    "RecipeStep",
    "RecipeUpdate",
    "RecipeVersion",
    "ShareLink",
    "ShareLinkQuerySet",
    "SourceImage",
    "StepResult",
    "Task",
    "TaskQuerySet",
    "Team",
    "UrlImport",
    "WebhookDelivery",
    "build_steps",
    "remote_calls",
]
