"""A marketer chooses an image's subject point: its crops re-render around it; GET only shows; other teams get 404."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from dashboard.models import Team
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import process_uploads
from tests.jobs.images import png, product_scene

pytestmark = pytest.mark.django_db


@pytest.fixture
def processed_scene(marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks):
    """A wide photo with a blue product on the right, through the Social ads pack."""
    scene = product_scene(2560, 1200, centre=(0.8, 0.5), size=0.35)
    process_uploads(
        marketer_client,
        campaign,
        [ready_recipes["social-ads-pack"]],
        {"wide.png": png(scene.image)},
        django_capture_on_commit_callbacks,
    )
    source = campaign.sources.get()
    assert set(source.tasks.values_list("state", flat=True)) == {"succeeded"}
    return source


def blue_share(data: bytes) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    return float(((pixels[..., 2] - pixels[..., 0]) > 60).mean())


def instagram_output(source) -> bytes:
    output = source.tasks.get().outputs.get(name="instagram")
    with output.file.open("rb") as handle:
        return handle.read()


def test_the_gallery_links_each_image_to_its_subject_chooser(marketer_client, campaign, processed_scene):
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert reverse("source-focal-point", args=[processed_scene.pk]) in page and "Choose subject" in page


def test_get_shows_the_chooser_and_changes_nothing(marketer_client, processed_scene):
    response = marketer_client.get(reverse("source-focal-point", args=[processed_scene.pk]))
    page = response.content.decode()
    assert response.status_code == 200 and "Where is the subject of wide.png?" in page
    assert "focal_point.js" in page and "Reset to automatic" not in page
    processed_scene.refresh_from_db()
    assert processed_scene.focal_point is None
    assert set(processed_scene.tasks.values_list("state", flat=True)) == {"succeeded"}


def test_clicking_the_subject_re_renders_the_crops_around_it(
    marketer_client, campaign, processed_scene, redis_conn, django_capture_on_commit_callbacks
):
    """Detection put the square on the blue product; a click on the left re-renders it there, and the
    chooser shows the point and offers to go back to automatic."""
    assert blue_share(instagram_output(processed_scene)) > 0.03
    url = reverse("source-focal-point", args=[processed_scene.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(url, {"x": "0.2", "y": "0.5"}, follow=True)
    assert "Subject point set for wide.png; re-rendering 1 recipe of it." in response.content.decode()
    assert "Subject chosen" in response.content.decode()
    task = processed_scene.tasks.get()
    assert task.state == "queued" and redis_conn.llen("rq:queue:default") == 1
    with django_capture_on_commit_callbacks(execute=True):
        run_burst_worker()
    task.refresh_from_db()
    assert task.state == "succeeded" and task.attempts == 2
    assert blue_share(instagram_output(processed_scene)) < 0.01  # the square is on the left now
    chooser = marketer_client.get(url).content.decode()
    assert "Reset to automatic" in chooser and "left: 20%" in chooser

    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(url, {"reset": "1"})
    processed_scene.refresh_from_db()
    assert processed_scene.focal_point is None and processed_scene.tasks.get().state == "queued"


def test_approved_crops_that_a_new_point_moves_go_back_to_review_and_unchanged_ones_keep_theirs(
    marketer_client, processed_scene, django_capture_on_commit_callbacks
):
    """Before, the re-render kept every approval of the same recipe version, though the crops were new."""
    task = processed_scene.tasks.get()
    url = reverse("source-focal-point", args=[processed_scene.pk])

    def choose_point_and_render() -> dict[str, tuple[str, str, str | None]]:
        with django_capture_on_commit_callbacks(execute=True):
            marketer_client.post(url, {"x": "0.2", "y": "0.5"})
        with django_capture_on_commit_callbacks(execute=True):
            run_burst_worker()
        return {
            o.name: (o.sha256, o.review, o.reviewed_by and o.reviewed_by.username) for o in task.outputs.all()
        }

    marketer_client.post(reverse("task-review", args=[task.pk]), {"decision": "approved"})
    before = dict(task.outputs.values_list("name", "sha256"))
    moved = choose_point_and_render()
    assert all(sha != before[name] for name, (sha, _, _) in moved.items()), "every fill crop moved"
    assert {(review, by) for _, review, by in moved.values()} == {("pending", None)}

    marketer_client.post(reverse("task-review", args=[task.pk]), {"decision": "approved"})
    again = choose_point_and_render()  # the same point: the same bytes
    assert {name: sha for name, (sha, _, _) in again.items()} == {
        name: sha for name, (sha, _, _) in moved.items()
    }
    assert {(review, by) for _, review, by in again.values()} == {("approved", "maria")}


def test_a_point_outside_the_picture_is_refused(marketer_client, processed_scene):
    response = marketer_client.post(
        reverse("source-focal-point", args=[processed_scene.pk]), {"x": "1.5", "y": "nan"}, follow=True
    )
    assert "Click on the picture to choose its subject." in response.content.decode()
    processed_scene.refresh_from_db()
    assert processed_scene.focal_point is None


def test_another_team_cannot_see_or_set_the_point(processed_scene, django_user_model):
    outsider = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Team.objects.create(name="Other").members.add(outsider)
    client = Client()
    client.force_login(outsider)
    url = reverse("source-focal-point", args=[processed_scene.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"x": "0.2", "y": "0.5"}).status_code == 404
    processed_scene.refresh_from_db()
    assert processed_scene.focal_point is None


def test_setting_the_point_needs_the_csrf_token(marketer, processed_scene):
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    response = client.post(reverse("source-focal-point", args=[processed_scene.pk]), {"x": "0.2", "y": "0.5"})
    assert response.status_code == 403
