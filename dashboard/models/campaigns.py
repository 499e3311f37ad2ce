"""Teams and their campaigns: who sees what, each run's progress, the budget for paid provider calls."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.db.models import Count, Exists, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from dashboard.models.intake import Generation, SourceImage
from dashboard.models.outputs import Output
from dashboard.models.providers import Provider
from dashboard.models.recipes import Recipe, RecipeUpdate, RecipeVersion
from dashboard.models.tasks import Progress, Task, TaskQuerySet

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class Team(models.Model):
    """A group of marketers who share campaigns."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    def __str__(self) -> str:
        return self.name


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def join_run(self, at: datetime | None = None) -> None:
        """Ready these campaigns' runs for work a person adds (Process, Requeue, Generate): a campaign with
        work still going keeps its run, which the new work joins; an idle one starts its next run at `at`.

        Call it inside the transaction that adds the work, before that work is queued. The campaign rows stay
        locked until it commits, so the check for a finished run (jobs.webhooks) sees the added work or none
        of it: a run never ends between deciding to join it and the joining. (A no-key lock: rows that
        merely reference the campaign, such as new tasks, can still be written meanwhile.)
        """
        locked = list(self.select_for_update(no_key=True).values_list("pk", flat=True))
        self.model.objects.filter(pk__in=locked).idle().update(
            run_number=F("run_number") + 1, run_started_at=at or timezone.now()
        )

    def idle(self) -> CampaignQuerySet:
        """Campaigns with nothing left to do: no unfinished task and no unfinished prompt."""
        return self.exclude(
            Exists(Task.objects.filter(campaign=OuterRef("pk")).unfinished())
            | Exists(Generation.objects.filter(campaign=OuterRef("pk")).unfinished())
        )

    def visible_to(self, user: User) -> CampaignQuerySet:
        if user.is_superuser:
            return self
        return self.filter(team__members=user)

    def counted(self) -> list[Campaign]:
        """These campaigns, each with source_count, task_count, done_count and failed_count.

        The figures are cached: a campaign's images only ever come after its newest, so their count holds
        while the newest stays; an idle campaign's tasks change only when a person adds work, which starts
        its next run, so their counts hold for the run. A busy campaign's task counts are cached for a few
        seconds (the campaign page shows its progress live). Counting every campaign on each call read a
        year's worth of tasks: 310,000 index entries for a page of 25, 60 ms; 600 ms for all on one page.
        """
        campaigns = list(
            self.annotate(
                counts_newest_source=Subquery(
                    SourceImage.objects.filter(campaign=OuterRef("pk")).order_by("-pk").values("pk")[:1]
                ),
                # state IN the unfinished ones, not NOT IN the finished: an index probe per state instead of
                # reading every finished task of the campaign to find none.
                counts_busy=ExpressionWrapper(
                    Exists(Task.objects.filter(campaign=OuterRef("pk"), state__in=Task.UNFINISHED_STATES))
                    | Exists(Generation.objects.filter(campaign=OuterRef("pk")).unfinished()),
                    output_field=models.BooleanField(),
                ),
            )
        )
        # The two annotations, read from each row's attributes: django-stubs types the rows as plain campaigns.
        newest = {c.pk: vars(c)["counts_newest_source"] for c in campaigns}
        busy = {c.pk for c in campaigns if vars(c)["counts_busy"]}
        source_keys = {c.pk: f"pixelmill:campaign-sources:{c.pk}:{newest[c.pk]}" for c in campaigns}
        task_keys = {
            c.pk: f"pixelmill:campaign-tasks:{c.pk}:{c.run_number}{':busy' if c.pk in busy else ''}"
            for c in campaigns
        }
        cached = cache.get_many([*source_keys.values(), *task_keys.values()])
        sources = {pk: cached[key] for pk, key in source_keys.items() if key in cached}
        tasks = {pk: cached[key] for pk, key in task_keys.items() if key in cached}
        sources.update(_count_sources([pk for pk in source_keys if pk not in sources]))
        tasks.update(_count_tasks([pk for pk in task_keys if pk not in tasks]))
        cache.set_many(
            {key: sources[pk] for pk, key in source_keys.items() if key not in cached}, COUNTS_SECONDS
        )
        for campaign in campaigns:
            key = task_keys[campaign.pk]
            if key not in cached:
                cache.set(
                    key, tasks[campaign.pk], BUSY_COUNTS_SECONDS if campaign.pk in busy else COUNTS_SECONDS
                )
            campaign.source_count = sources[campaign.pk]
            campaign.task_count, campaign.done_count, campaign.failed_count = tasks[campaign.pk]
        return campaigns


# Figures under a key that still holds stay right, unless someone deletes tasks or images in the admin:
# that shows for an hour at most.
COUNTS_SECONDS = 3600
BUSY_COUNTS_SECONDS = 5


def _count_sources(pks: list[int]) -> dict[int, int]:
    """Each campaign's images, in one grouped query."""
    if not pks:
        return {}
    counted = (
        SourceImage.objects.filter(campaign__in=pks).order_by().values("campaign").annotate(n=Count("*"))
    )
    return {pk: 0 for pk in pks} | dict(counted.values_list("campaign", "n"))


def _count_tasks(pks: list[int]) -> dict[int, tuple[int, int, int]]:
    """(tasks, finished, failed or dead) of each campaign, in one grouped query on the (campaign, state) index."""
    if not pks:
        return {}
    states: dict[int, dict[str, int]] = {pk: {} for pk in pks}
    counted = (
        Task.objects.filter(campaign__in=pks).order_by().values("campaign", "state").annotate(n=Count("*"))
    )
    for campaign_id, state, n in counted.values_list("campaign", "state", "n"):
        states[campaign_id][state] = n
    return {
        pk: (
            sum(by_state.values()),
            sum(by_state.get(state, 0) for state in Task.TERMINAL_STATES),
            by_state.get(Task.State.FAILED, 0) + by_state.get(Task.State.DEAD, 0),
        )
        for pk, by_state in states.items()
    }


# Receivers tell our secrets from others' by this prefix (as Stripe's "whsec_").
WEBHOOK_SECRET_PREFIX = "whsec_"


class Campaign(models.Model):
    """A named batch of work: source images × the recipes chosen for them."""

    name = models.CharField(max_length=200)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="campaigns")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipes = models.ManyToManyField(Recipe, blank=True, related_name="campaigns")
    webhook_url = models.URLField(
        blank=True, help_text="Receives a signed JSON summary each time a run of this campaign finishes."
    )
    webhook_secret = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Signs webhook bodies; shown once to the owner."
    )
    run_number = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="The current run: from a person's Process, Requeue or Generate on an idle campaign until "
        "nothing is left to do; what they add meanwhile joins it. One webhook per run.",
    )
    run_started_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the current run began."
    )
    remote_paused_reason = models.TextField(
        blank=True, help_text="Set when a provider says the account is out of credits; remote steps wait."
    )
    remote_paused_at = models.DateTimeField(null=True, blank=True)
    remote_paused_code = models.CharField(
        max_length=40, blank=True, help_text="Why remote work waits: credits_exhausted or budget_reached."
    )
    budget_cap = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Most this campaign may spend on provider calls; remote steps pause when reached. Empty: no cap.",
    )
    remote_spent = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        default=0,
        editable=False,
        help_text="Booked before each paid provider call, at the provider's price per call.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CampaignQuerySet.as_manager()

    # What CampaignQuerySet.counted() sets on the campaigns it returns.
    source_count: int
    task_count: int
    done_count: int
    failed_count: int

    class Meta:
        ordering = ["-created_at", "-pk"]

    def ensure_webhook_secret(self) -> str:
        """The signing secret of this campaign's webhooks, created on first need; a conditional UPDATE keeps
        two racers on one."""
        if not self.webhook_secret:
            fresh = WEBHOOK_SECRET_PREFIX + secrets.token_hex(24)
            Campaign.objects.filter(pk=self.pk, webhook_secret="").update(webhook_secret=fresh)
            self.webhook_secret = Campaign.objects.values_list("webhook_secret", flat=True).get(pk=self.pk)
        return self.webhook_secret

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("campaign-detail", args=[self.pk])

    def archive_name(self, suffix: str = "") -> str:
        """The download's file name: the campaign's name a person recognises, and its id to keep it unique."""
        return f"pixelmill-{slugify(self.name)[:60] or 'campaign'}-{self.pk}{suffix}.zip"

    def run_tasks(self) -> TaskQuerySet:
        """The current run's tasks: what was queued or requeued since the campaign was last idle."""
        return self.tasks.filter(run_number=self.run_number)

    def progress(self) -> Progress:
        """Progress of the current run: its total moves only when a person adds work to the run, and a
        Process after the run finished starts again from 0%, not from the history."""
        return Progress.for_tasks(self.run_tasks())

    def approved_output_count(self) -> int:
        return Output.objects.filter(task__campaign=self).approved().count()

    def recipe_updates(self) -> list[RecipeUpdate]:
        """Each of the campaign's recipes with the versions its tasks were made with, and whether a newer one exists."""
        used: dict[int, set[int]] = {}
        # Version by version, whether this campaign has a task on it: one index probe each
        # (task_version_campaign), where DISTINCT over the campaign's tasks read all 100,000 (23 ms).
        in_campaign = Task.objects.filter(campaign=self, recipe_version=OuterRef("pk"))
        for recipe_id, number in RecipeVersion.objects.filter(Exists(in_campaign)).values_list(
            "recipe_id", "number"
        ):
            used.setdefault(recipe_id, set()).add(number)
        return [
            RecipeUpdate(recipe, sorted(used[recipe.pk]))
            for recipe in self.recipes.filter(pk__in=used).order_by("name")
        ]

    @classmethod
    def book_remote_spend(cls, campaign_id: int, amount: Decimal) -> bool:
        """Book a paid call's price before making it; False when it would take the campaign past its cap.

        One conditional UPDATE, so workers racing for the last of the budget cannot overspend it together.
        """
        if amount <= 0:
            return True
        within_cap = Q(budget_cap__isnull=True) | Q(budget_cap__gte=F("remote_spent") + amount)
        booked = cls.objects.filter(within_cap, pk=campaign_id).update(
            remote_spent=F("remote_spent") + amount
        )
        return booked == 1

    @classmethod
    def refund_remote_spend(cls, campaign_id: int, amount: Decimal) -> None:
        """A booked call the provider did not charge for (it answered with an error)."""
        if amount > 0:
            cls.objects.filter(pk=campaign_id).update(remote_spent=F("remote_spent") - amount)

    @classmethod
    def pause_remote(cls, campaign_id: int, *, code: str, reason: str) -> bool:
        """Stop remote steps until someone resumes them; the first reason stays."""
        return bool(
            cls.objects.filter(pk=campaign_id, remote_paused_reason="").update(
                remote_paused_reason=reason, remote_paused_code=code[:40], remote_paused_at=timezone.now()
            )
        )

    def suggested_budget_cap(self) -> Decimal | None:
        """What to raise a reached cap to: what is spent plus the dearest call for each waiting task."""
        if self.budget_cap is None:
            return None
        waiting = self.tasks.filter(state=Task.State.PAUSED).count()
        dearest = Provider.objects.filter(is_active=True).aggregate(m=models.Max("price_per_call"))["m"]
        suggested = self.remote_spent + waiting * (dearest or Decimal(0))
        return max(suggested, self.budget_cap + Decimal("0.01")).quantize(Decimal("0.01"))

    @property
    def budget_left(self) -> Decimal | None:
        return None if self.budget_cap is None else max(Decimal(0), self.budget_cap - self.remote_spent)
