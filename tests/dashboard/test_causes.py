"""Failure causes: every error code a task can end with has a plain-words cause, grouped in SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.causes import OTHER, cause_for, describe_code, group_by_cause
from dashboard.models import Task
from tests.factories import make_task

JOBS = Path(__file__).resolve().parents[2] / "jobs"
# Codes that never end a task as failed: waits, pauses, and what only a Generation (not a Task) records.
NOT_TASK_FAILURES = {
    "deferred",
    "credits_exhausted",
    "budget_reached",
    "cancelled_at_provider",
    "no_images",
    "not_finished",
    "permanent",
    "transient",
    "step_failed",
}


# Fetching a user's URL ends a URL import or a webhook delivery, never a task.
NOT_TASK_MODULES = {"url_fetcher.py"}


def raised_codes() -> set[str]:
    codes: set[str] = set()
    for path in JOBS.rglob("*.py"):
        if path.name not in NOT_TASK_MODULES:
            codes |= set(re.findall(r'\bcode(?:=| = )"([a-z_0-9]+)"', path.read_text()))
    return codes


def test_every_error_code_the_workers_raise_has_a_cause_in_plain_words():
    codes = raised_codes()
    assert {
        "timeout",
        "unreadable",
        "provider_rejected",
        "worker_lost",
        "queue_lost",
    } <= codes  # the scan finds them
    unexplained = sorted(code for code in codes - NOT_TASK_FAILURES if cause_for(code) is OTHER)
    assert unexplained == []


def test_every_error_code_reads_as_plain_words_not_as_the_code():
    for code in raised_codes() - NOT_TASK_FAILURES:
        words = describe_code(code)
        assert "_" not in words and "another kind of error" not in words, (code, words)
    assert describe_code("http_503") == "The provider answered with error 503"
    assert describe_code("") == "No reason recorded"
    assert describe_code("something_new") == "Other: another kind of error"


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("rate_limited", "Rate limited"),
        ("http_503", "Provider unavailable"),
        ("provider_rejected", "Provider rejected the image"),
        ("unreadable", "Unreadable file"),
        ("timeout", "Timed out"),
        ("worker_lost", "Interrupted"),
        ("queue_lost", "Interrupted"),
        ("database_unavailable", "Interrupted"),
        ("queue_unavailable", "Interrupted"),
        ("storage_unavailable", "Interrupted"),
        ("out_of_memory", "Interrupted"),
        ("internal_error", "Internal error (reported to staff)"),
        ("no_plain_background", "Photo does not suit the recipe"),
        ("something_new", "Other"),
    ],
)
def test_codes_read_as_causes(code, label):
    assert cause_for(code).label == label


def test_codes_fold_into_causes_largest_first():
    groups = group_by_cause([("http_503", 2), ("connection_failed", 3), ("timeout", 4), ("", 1)])
    assert [(g.cause.slug, g.count) for g in groups] == [("provider_down", 5), ("timeout", 4), ("other", 1)]
    assert groups[0].codes == ("connection_failed", "http_503")


def test_tasks_group_and_filter_by_cause_in_the_database(campaign, ready_recipes):
    recipe = ready_recipes["sale-banner"]
    for n, code in enumerate(["rate_limited", "rate_limit_wait", "http_502", "unreadable", "weird"]):
        make_task(campaign, recipe, sha=f"{n:064d}", state=Task.State.FAILED, error_code=code)
    failed = Task.objects.failed()
    assert {g.cause.slug: g.count for g in failed.causes()} == {
        "rate_limited": 2, "provider_down": 1, "unreadable": 1, "other": 1
    }  # fmt: skip
    assert set(failed.with_cause("rate_limited").values_list("error_code", flat=True)) == {
        "rate_limited", "rate_limit_wait"
    }  # fmt: skip
    assert list(failed.with_cause("provider_down").values_list("error_code", flat=True)) == ["http_502"]
    assert list(failed.with_cause("other").values_list("error_code", flat=True)) == ["weird"]
    assert not failed.with_cause("no-such-cause").exists()
