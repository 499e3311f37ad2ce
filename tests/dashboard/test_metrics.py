"""Chart figures bucketed in SQL: throughput, task time (average exact, p95 from a histogram), failures by
cause; a fixed number of aggregate queries whatever the number of tasks."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.metrics import EpochSeconds, Timeline, bucket_width, describe_width, metrics_for
from dashboard.models import Task
from tests.factories import make_source

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def add_tasks(campaign, ready_recipes):
    version = ready_recipes["sale-banner"].current_version()
    counter = iter(range(1_000_000))

    def add(offsets_and_fields: list[tuple[float, dict]]) -> None:
        tasks = []
        for offset, fields in offsets_and_fields:
            source = make_source(campaign, sha=f"{next(counter):064d}")
            tasks.append(
                Task(campaign=campaign, source=source, recipe_version=version,
                     finished_at=START + timedelta(seconds=offset), **fields)
            )  # fmt: skip
        Task.objects.bulk_create(tasks)

    return add


def test_the_database_computes_the_same_epoch_seconds_as_python(add_tasks, campaign):
    add_tasks([(12.7, {"state": "succeeded"})])
    [epoch] = campaign.tasks.annotate(epoch=EpochSeconds("finished_at")).values_list("epoch", flat=True)
    assert epoch in (int(START.timestamp()) + 12, int(START.timestamp()) + 13)


@pytest.mark.parametrize(
    ("span", "width"), [(50, 1), (100, 2), (600, 10), (3600, 60), (6 * 3600, 600), (31 * 86400, 86400)]
)
def test_buckets_are_round_widths_that_keep_a_chart_to_about_sixty_bars(span, width):
    assert bucket_width(span) == width
    timeline = Timeline.covering(START, START + timedelta(seconds=span))
    assert timeline.count <= 61


def test_throughput_counts_finished_tasks_per_bucket_by_outcome(add_tasks, campaign):
    add_tasks([(5, {"state": "succeeded"}), (7, {"state": "succeeded"}), (8, {"state": "failed", "error_code": "timeout"}),
               (61, {"state": "dead", "error_code": "http_503"}), (100, {"state": "succeeded"})])  # fmt: skip
    Task.objects.filter(pk=campaign.tasks.last().pk).update(
        state="queued", finished_at=None
    )  # requeued since
    add_tasks([(200, {"state": "succeeded"})])
    metrics = metrics_for(campaign.tasks.all())
    assert (metrics.timeline.width, metrics.timeline.count) == (5, 40)  # 5 s to 200 s in 5-second bars
    assert metrics.finished == 5
    assert (metrics.succeeded[0], metrics.failed[0]) == (2, 1)  # 5–10 s
    assert metrics.failed[11] == 1 and metrics.succeeded[39] == 1 and sum(metrics.succeeded) == 3
    assert metrics.errors == {"provider_down": [0] * 11 + [1] + [0] * 28, "timeout": [1] + [0] * 39}
    assert metrics.peak_per_minute == 36.0  # 3 in one 5-second bar


def test_task_time_is_averaged_exactly_and_its_p95_read_within_five_percent(add_tasks, campaign):
    rng = random.Random(3)
    durations = [rng.lognormvariate(math.log(1500), 0.6) for _ in range(400)]
    add_tasks([(1, {"state": "succeeded", "duration_ms": ms}) for ms in durations])
    metrics = metrics_for(campaign.tasks.all())
    exact_p95 = sorted(durations)[math.ceil(0.95 * len(durations)) - 1] / 1000
    assert metrics.average_seconds[0] == pytest.approx(sum(durations) / len(durations) / 1000)
    assert metrics.p95_seconds[0] == pytest.approx(exact_p95, rel=0.06)
    assert metrics.overall_p95_seconds == metrics.p95_seconds[0]


def test_the_figures_take_a_fixed_handful_of_queries_however_many_tasks(
    add_tasks, campaign, django_assert_num_queries
):
    add_tasks([(n * 7.3, {"state": "succeeded", "duration_ms": 800 + n}) for n in range(300)])
    add_tasks([(n * 11.0, {"state": "failed", "error_code": "timeout"}) for n in range(50)])
    with django_assert_num_queries(4):  # span, throughput, task-time histogram, failures
        metrics = metrics_for(campaign.tasks.all())
    assert metrics.finished == 350


def test_a_period_leaves_out_what_finished_before_it(add_tasks, campaign):
    add_tasks([(0, {"state": "succeeded"}), (3600, {"state": "succeeded"})])
    metrics = metrics_for(campaign.tasks.all(), since=START + timedelta(minutes=30))
    assert metrics.finished == 1
    assert metrics_for(campaign.tasks.none()).timeline is None


@pytest.mark.parametrize(("seconds", "text"), [(1, "second"), (10, "10 seconds"), (60, "minute"), (300, "5 minutes"), (3600, "hour"), (86400, "day")])  # fmt: skip
def test_a_bucket_is_named_for_what_one_bar_stands_for(seconds, text):
    assert describe_width(seconds) == text
