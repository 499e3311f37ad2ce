"""Why tasks fail, in a marketer's words: the workers' error codes grouped into causes, each saying what
helps. The codes come from jobs/ (errors.py, providers/error_mapping.py, operations, imaging, tasks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q


@dataclass(frozen=True)
class Cause:
    slug: str
    label: str
    advice: str
    codes: frozenset[str] = frozenset()
    code_prefix: str = ""  # e.g. "http_" for every status a provider failed with

    def matches(self, code: str) -> bool:
        return code in self.codes or bool(self.code_prefix and code.startswith(self.code_prefix))

    def q(self) -> Q:
        """The tasks whose error code has this cause, as a filter."""
        condition = Q(error_code__in=self.codes)
        if self.code_prefix:
            condition |= Q(error_code__startswith=self.code_prefix)
        return condition


CAUSES: tuple[Cause, ...] = (
    Cause(
        "rate_limited",
        "Rate limited",
        "The provider kept asking us to slow down. Requeue later, or send them to another provider.",
        frozenset({"rate_limited", "rate_limit_wait"}),
    ),
    Cause(
        "provider_down",
        "Provider unavailable",
        "The provider answered with server errors or could not be reached. Requeue once it is back, or use another provider.",
        frozenset({"connection_failed", "circuit_open"}),
        code_prefix="http_",
    ),
    Cause(
        "provider_rejected",
        "Provider rejected the image",
        "The provider refused these images or sent back something unusable; its reason is on each. Try another provider, or our own workers.",
        frozenset({"provider_rejected", "bad_answer"}),
    ),
    Cause(
        "timeout",
        "Timed out",
        "A step took longer than allowed. Requeueing usually works; a provider that stays slow can be swapped.",
        frozenset({"timeout"}),
    ),
    Cause(
        "unreadable",
        "Unreadable file",
        "The file is corrupt, truncated, too large or not an image. Replace it: requeueing the same file will not help.",
        frozenset(
            {"unreadable", "unprocessable", "too_large"}
        ),  # unprocessable: tasks failed before issue 12
    ),
    Cause(
        "unsuitable",
        "Photo does not suit the recipe",
        "For example background removal on our workers needs a plain backdrop, and a cut-out that would "
        "come out in pieces is refused. An AI provider for that step, the step's \u201ckeep whole\u201d option, "
        "or another recipe can help. A photo too small for every output needs a larger one, or an Upscale step.",
        frozenset({"no_plain_background", "no_subject", "unusable_cutout", "text_too_long", "too_small"}),
    ),
    Cause(
        "worker_lost",
        "Interrupted",
        "A worker stopped part way (a restart or a crash) or ran short of memory, the queue lost the job "
        "(Redis restarted empty), or the queue, the database or file storage was briefly unreachable. "
        "Nothing was lost; requeueing usually works.",
        frozenset(
            {
                "worker_lost",
                "queue_lost",
                "database_unavailable",
                "queue_unavailable",
                "storage_unavailable",
                "out_of_memory",
            }
        ),
    ),
    Cause(
        "setup",
        "Recipe or provider setup",
        "A provider is switched off or misconfigured, or an asset such as the logo is missing. An admin fixes it, then requeue.",
        frozenset({"bad_config", "missing_asset", "bad_params"}),
    ),
    Cause(
        "internal_error",
        "Internal error (reported to staff)",
        "Something went wrong on our side. It was not retried, since it would fail the same way again; staff "
        "have the details under each error ref. Requeue once they say a fix is out.",
        frozenset({"internal_error"}),
    ),
)
OTHER = Cause("other", "Other", "An error without a known cause; the message on each says what happened.")
BY_SLUG = {cause.slug: cause for cause in (*CAUSES, OTHER)}

# Each code in a few plain words, where the failures page narrows a cause down to one kind of error.
CODE_LABELS = {
    "rate_limited": "The provider asked us to slow down",
    "rate_limit_wait": "Waited too long for the provider",
    "connection_failed": "The provider could not be reached",
    "circuit_open": "The provider kept failing, so calls were stopped",
    "provider_rejected": "The provider refused the image",
    "bad_answer": "The provider sent back something unusable",
    "timeout": "A step took too long",
    "unreadable": "The file is corrupt or not an image",
    "unprocessable": "The file could not be processed",
    "too_large": "The file is too large",
    "no_plain_background": "No plain backdrop to remove",
    "no_subject": "No clear subject in the photo",
    "unusable_cutout": "The cut-out came out in pieces",
    "text_too_long": "The text does not fit",
    "too_small": "The photo is too small for every output",
    "worker_lost": "A worker stopped part way",
    "queue_lost": "The queue lost the job",
    "database_unavailable": "The database was briefly unreachable",
    "queue_unavailable": "The queue was briefly unreachable",
    "storage_unavailable": "File storage was briefly unreachable",
    "out_of_memory": "Ran out of memory",
    "bad_config": "A provider is switched off or misconfigured",
    "missing_asset": "An asset such as the logo is missing",
    "bad_params": "The recipe's settings are invalid",
    "internal_error": "Something broke on our side",
    "": "No reason recorded",
}


def cause_for(code: str) -> Cause:
    return next((cause for cause in CAUSES if cause.matches(code)), OTHER)


def describe_code(code: str) -> str:
    """One error code as a marketer reads it; never the code itself."""
    if code in CODE_LABELS:
        return CODE_LABELS[code]
    if code.startswith("http_") and code[5:].isdigit():
        return f"The provider answered with error {code[5:]}"
    return f"{cause_for(code).label}: another kind of error"


def other_q() -> Q:
    """Failed tasks that none of the known causes explain."""
    known = Q()
    for cause in CAUSES:
        known |= cause.q()
    return ~known


@dataclass(frozen=True)
class CauseGroup:
    cause: Cause
    count: int
    codes: tuple[str, ...]


def group_by_cause(code_counts: Iterable[tuple[str, int]]) -> list[CauseGroup]:
    """(error code, count) rows, as one SQL GROUP BY gives them, folded into causes, largest first."""
    counts: dict[str, int] = {}
    codes: dict[str, list[str]] = {}
    for code, count in code_counts:
        cause = cause_for(code)
        counts[cause.slug] = counts.get(cause.slug, 0) + count
        codes.setdefault(cause.slug, []).append(code)
    return sorted(
        (CauseGroup(BY_SLUG[slug], count, tuple(sorted(codes[slug]))) for slug, count in counts.items()),
        key=lambda group: (-group.count, group.cause.label),
    )
