"""The dashboard benchmark's seeding, tiny: rows written by COPY or executemany read back as the ORM's own."""

from __future__ import annotations

from benchmarks.dashboard_scale import seed, seed_history


def test_a_tiny_year_of_campaigns_is_seeded_with_every_column_a_model_expects(db, tmp_path):
    from dashboard.models import Campaign, Task

    user, campaign, _ = seed(10, 2, 3, tmp_path / "media")
    assert seed_history(user, 2, 40, 10) == 4
    assert campaign.tasks.count() == 20 and Task.objects.count() == 60
    task = campaign.tasks.filter(state="succeeded").first()
    assert task is not None
    assert (task.timings, task.provider_calls, task.notes, task.run_number) == ({}, [], [], 0)
    assert task.source.campaign == campaign and task.duration_ms is not None
    assert sorted(c.task_count for c in Campaign.objects.all().counted()) == [10, 10, 10, 10, 20]
    assert sum(1 for _ in (tmp_path / "media").rglob("*.jpg")) == 3
