"""The campaign page's gallery: which images a filter keeps, and which result of each recipe a tile shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from dashboard.models import Campaign, Output, SourceImage, Task

WORKING_STATES = (Task.State.PENDING, Task.State.QUEUED, Task.State.PAUSED, Task.State.RUNNING)
# ?state= of the gallery: (what the marketer picks, the task states it means).
STATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ready": ("Ready", (Task.State.SUCCEEDED,)),
    "rule_breaking": ("Breaks a channel rule", (Task.State.SUCCEEDED,)),
    "failed": ("Failed", (Task.State.FAILED, Task.State.DEAD)),
    "working": ("In progress", WORKING_STATES),
}
NOT_PROCESSED = "new"  # images without a task (of the chosen recipe): nothing for a tile to show
STATE_CHOICES = [(key, label) for key, (label, _) in STATES.items()] + [(NOT_PROCESSED, "Not processed yet")]
REVIEW_CHOICES = Output.Review.choices


@dataclass(frozen=True)
class GalleryTask:
    task: Task
    earlier_versions: int  # tasks of the same image on older versions of the recipe, left to the compare page


def newest_per_recipe(tasks: Iterable[Task]) -> list[GalleryTask]:
    """A tile shows each recipe's newest version: an image re-run on ten versions shows one card,
    saying how many earlier ones the version compare holds (240 cards a page took 240 ms to render)."""
    by_recipe: dict[int, list[Task]] = {}
    for task in tasks:
        by_recipe.setdefault(task.recipe_version.recipe_id, []).append(task)
    shown = []
    for versions in by_recipe.values():
        newest = max(versions, key=lambda task: (task.recipe_version.number, task.pk))
        shown.append(GalleryTask(newest, len(versions) - 1))
    return sorted(shown, key=lambda item: (item.task.recipe_version.recipe.name, item.task.pk))


def newest_tasks(campaign: Campaign) -> QuerySet[Task]:
    """The tasks the gallery shows, in SQL: no task of a newer version of the same recipe on the same image."""
    newer = Task.objects.filter(
        source=OuterRef("source"),
        recipe_version__recipe=OuterRef("recipe_version__recipe"),
        recipe_version__number__gt=OuterRef("recipe_version__number"),
    )
    return Task.objects.filter(campaign=campaign).filter(~Exists(newer))


@dataclass(frozen=True)
class GalleryFilter:
    """?state=, ?recipe= and ?review= of the gallery: all three hold for one and the same result."""

    state: str = ""
    recipe_id: int | None = None
    review: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> GalleryFilter:
        """Unknown values are ignored rather than refused: an old bookmark still shows the gallery."""
        state, recipe, review = (query.get(key, "") for key in ("state", "recipe", "review"))
        return cls(
            state=state if state in STATES or state == NOT_PROCESSED else "",
            recipe_id=int(recipe) if recipe.isdigit() else None,
            review=review if review in Output.Review.values else "",
        )

    @property
    def is_active(self) -> bool:
        return bool(self.state or self.recipe_id or self.review)

    def task_condition(self) -> Q:
        condition = Q()
        if self.state in STATES:
            condition &= Q(state__in=STATES[self.state][1])
        if self.state == "rule_breaking":
            condition &= Exists(Output.objects.filter(task=OuterRef("pk")).breaking_rules())
        if self.recipe_id:
            condition &= Q(recipe_version__recipe_id=self.recipe_id)
        if self.review:
            condition &= Exists(Output.objects.filter(task=OuterRef("pk"), review=self.review))
        return condition

    def sources(self, campaign: Campaign) -> QuerySet[SourceImage]:
        """The campaign's images that have a result (its newest per recipe) matching every condition."""
        sources = campaign.sources.all()
        if not self.is_active:
            return sources
        if self.state == NOT_PROCESSED:
            if self.review:
                return sources.none()
            tasks = Task.objects.filter(source=OuterRef("pk"))
            if self.recipe_id:
                tasks = tasks.filter(recipe_version__recipe_id=self.recipe_id)
            return sources.filter(~Exists(tasks))
        shown = newest_tasks(campaign).filter(self.task_condition(), source=OuterRef("pk"))
        return sources.filter(Exists(shown))

    def shows(self, task: Task) -> bool:
        """Whether a tile shows this result; the task's outputs are prefetched."""
        if self.state == NOT_PROCESSED:
            return False
        if self.state in STATES and task.state not in STATES[self.state][1]:
            return False
        if self.state == "rule_breaking" and not any(output.violations for output in task.outputs.all()):
            return False
        if self.recipe_id and task.recipe_version.recipe_id != self.recipe_id:
            return False
        return not self.review or any(output.review == self.review for output in task.outputs.all())
