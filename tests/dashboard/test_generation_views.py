"""Generate from prompts on the campaign page: the form and its errors, the list, cancel and requeue, fal's
webhook (verified, idempotent), the progress panel, and team-only access."""

# ruff: noqa: F811 - the fixtures imported from tests/jobs/fal.py are named again as test arguments

from __future__ import annotations

import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from dashboard.models import Campaign, Generation, Provider, Task, Team
from dashboard.prompts import PromptSpec
from dashboard.services import queue_generations
from jobs.generation import run_generation_task
from jobs.queueing import GENERATIONS, get_process_queue
from tests.dashboard.pages import find_all, text_of
from tests.jobs.conftest import simulator  # noqa: F401 (fixture)
from tests.jobs.fal import (  # noqa: F401 (fixtures)
    fal_provider,
    fast_generation,
    submits,
    webhook_catcher,
)
from tests.polling import drain_until

pytestmark = pytest.mark.usefixtures("redis_conn")


def csv_upload(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("prompts.csv", text.encode(), content_type="text/csv")


def post_prompts(client: Client, campaign: Campaign, provider: Provider, **fields):
    data = {"provider": provider.pk, "image_size": "256x256", "num_images": 1, "prompts": "", **fields}
    return client.post(reverse("campaign-generate", args=[campaign.pk]), data)


@pytest.mark.django_db(transaction=True)
def test_a_marketer_turns_a_prompt_list_and_a_csv_into_processed_images(
    marketer_client, campaign, ready_recipes, fal_provider, simulator
):
    campaign.recipes.add(ready_recipes["sale-banner"])
    response = post_prompts(
        marketer_client,
        campaign,
        fal_provider,
        prompts="Red sneakers on a sunny beach\n\nA cozy cabin in snowy woods\n",
        image_size="512x512",  # a 1200×628 banner from 256 px would be a 4.7× blur, and is not made
        csv_file=csv_upload("prompt,seed,image_size,num_images\nA kite over the dunes,5,square,2\n"),
    )
    assert response.status_code == 302
    generations = list(campaign.generations.order_by("pk"))
    assert [(g.prompt, g.seed, g.image_size, g.num_images) for g in generations] == [
        ("Red sneakers on a sunny beach", None, "512x512", 1),
        ("A cozy cabin in snowy woods", None, "512x512", 1),
        ("A kite over the dunes", 5, "square", 2),
    ]
    drain_until(lambda: not Task.objects.unfinished().exists() and campaign.tasks.count() == 4)

    assert set(Generation.objects.values_list("state", flat=True)) == {"succeeded"}
    assert campaign.sources.filter(origin="generated").count() == 4
    assert set(campaign.tasks.values_list("state", flat=True)) == {"succeeded"}
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "A kite over the dunes" in page and "Succeeded" in page
    assert "red-sneakers-on-a-sunny-beach.jpg" in page  # in the gallery, with its outputs
    assert [img.attrs.get("alt") for img in find_all(page, "img")].count("banner 1200×628") == 4


def test_the_form_names_every_bad_line_and_keeps_the_prompts(marketer_client, campaign, fal_provider):
    response = post_prompts(
        marketer_client,
        campaign,
        fal_provider,
        prompts="A good prompt\nAnother good one",
        csv_file=csv_upload(
            "prompt,seed,image_size,num_images\n"
            ",1,square,1\n"
            "A lamp,abc,,\n"
            "A rug,,huge,\n"
            "A vase,,,5\n"
            "A chair,-3,,\n"
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    for message in (
        "CSV row 2: the prompt is empty.",
        "CSV row 3: seed &#x27;abc&#x27; is not a whole number.",
        "CSV row 4: image size &#x27;huge&#x27; is unknown",
        "CSV row 5: images per prompt must be a whole number from 1 to 4.",
        "CSV row 6: seed -3 is out of range",
    ):
        assert message in page
    [prompts] = find_all(page, "textarea", name="prompts")
    assert prompts.value.strip() == "A good prompt\nAnother good one"
    assert not Generation.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompts": "\n  \n"}, "Write at least one prompt, or choose a CSV file of prompts."),
        ({"prompts": "a cat", "image_size": "giant"}, "The image size &#x27;giant&#x27; is unknown"),
        ({"prompts": "a cat", "num_images": 5}, "Images per prompt must be 1 to 4."),
        ({"prompts": "a cat", "num_images": 0}, "Images per prompt must be 1 to 4."),
        (
            {"prompts": "\n".join(f"prompt {n}" for n in range(501))},
            "At most 500 prompts at once; this list has 501.",
        ),
        ({"csv_file": SimpleUploadedFile("p.csv", b"\xff\xfe\x00bad")}, "The CSV file is not UTF-8 text"),
    ],
)
def test_the_form_refuses_what_fal_cannot_run(marketer_client, campaign, fal_provider, fields, message):
    response = post_prompts(marketer_client, campaign, fal_provider, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Generation.objects.exists()


def test_a_csv_without_header_takes_columns_in_order_and_blank_cells_take_the_defaults(
    marketer_client, campaign, fal_provider, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_prompts(
            marketer_client,
            campaign,
            fal_provider,
            csv_file=csv_upload('"A boat, at dawn",12\nA bike,,512x512,3\n'),
        )
    assert response.status_code == 302
    rows = list(campaign.generations.values_list("prompt", "seed", "image_size", "num_images"))
    assert rows == [("A boat, at dawn", 12, "256x256", 1), ("A bike", None, "512x512", 3)]
    queued = get_process_queue().get_job_ids()
    assert queued == [GENERATIONS.job_id(pk, 1) for pk in campaign.generations.values_list("pk", flat=True)]


def test_the_generate_form_appears_only_with_an_active_fal_provider(marketer_client, campaign, db):
    assert 'id="generate-form"' not in marketer_client.get(campaign.get_absolute_url()).content.decode()
    Provider.objects.create(name="fal", slug="fal", kind="fal", base_url="https://queue.fal.run")
    assert 'id="generate-form"' in marketer_client.get(campaign.get_absolute_url()).content.decode()
    Provider.objects.filter(slug="fal").update(is_active=False)
    assert 'id="generate-form"' not in marketer_client.get(campaign.get_absolute_url()).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_cancel_button_stops_a_waiting_generation_here_and_at_fal(
    marketer_client, campaign, fal_provider, simulator, settings
):
    simulator.configure(provider="fal", fal_queue_seconds=30)
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    queue_generations(campaign, fal_provider, [PromptSpec("A rug", image_size="256x256")])
    generation = campaign.generations.get()
    assert run_generation_task(generation.pk, 1) == "waiting"
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert reverse("generation-cancel", args=[generation.pk]) in page

    confirm = marketer_client.get(reverse("generation-cancel", args=[generation.pk]))
    assert confirm.status_code == 200 and "Yes, cancel" in confirm.content.decode()
    response = marketer_client.post(reverse("generation-cancel", args=[generation.pk]))
    assert response.status_code == 302
    generation.refresh_from_db()
    assert generation.state == "cancelled"
    assert [(e["method"], e["status"]) for e in simulator.log(kind="api") if e["endpoint"] == "cancel"] == [
        ("PUT", 202)
    ]


@pytest.mark.django_db(transaction=True)
def test_requeue_sends_a_failed_generation_back_and_it_succeeds(
    marketer_client, campaign, fal_provider, simulator
):
    simulator.configure(provider="fal", fail_next=["400"])
    post_prompts(marketer_client, campaign, fal_provider, prompts="A lamp")
    generation = campaign.generations.get()
    drain_until(lambda: Generation.objects.get(pk=generation.pk).state == "failed")
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "The image could not be processed" in page
    assert reverse("generation-requeue", args=[generation.pk]) in page

    response = marketer_client.post(reverse("generation-requeue", args=[generation.pk]))
    assert response.status_code == 302
    drain_until(lambda: Generation.objects.get(pk=generation.pk).state == "succeeded")
    generation.refresh_from_db()
    assert (generation.attempts, generation.error_message) == (2, "")
    assert [e["status"] for e in submits(simulator)] == [400, 200]


@pytest.mark.django_db(transaction=True)
def test_the_progress_panel_counts_generations_so_a_marketer_sees_them_move(
    marketer_client, campaign, fal_provider, simulator, settings
):
    simulator.configure(provider="fal", fal_queue_seconds=30)
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    post_prompts(marketer_client, campaign, fal_provider, prompts="A\nB\nC")
    first, second, _ = campaign.generations.order_by("pk")
    Generation.objects.filter(pk=second.pk).update(state="running")

    counts = marketer_client.get(reverse("campaign-progress", args=[campaign.pk]), {"format": "json"}).json()
    assert counts["generations"] == {"waiting": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    panel = marketer_client.get(reverse("campaign-progress", args=[campaign.pk]), {"live": "1"})
    html = panel.content.decode()
    assert 'hx-trigger="every 2s"' in html, "keeps polling while prompts are unfinished, even with no tasks"
    counts = text_of(html, "generation-counts")
    assert "2 waiting" in counts and "1 generating" in counts
    assert "HX-Refresh" not in panel.headers

    Generation.objects.update(state="succeeded")
    finished = marketer_client.get(reverse("campaign-progress", args=[campaign.pk]), {"live": "1"})
    assert finished.headers["HX-Refresh"] == "true"


def test_another_teams_generations_answer_404(client, django_user_model, campaign, fal_provider):
    queue_generations(campaign, fal_provider, [PromptSpec("A secret product")])
    generation = campaign.generations.get()
    outsider = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Team.objects.create(name="Other team").members.add(outsider)
    client.force_login(outsider)

    for name in ("generation-cancel", "generation-requeue"):
        assert client.get(reverse(name, args=[generation.pk])).status_code == 404
        assert client.post(reverse(name, args=[generation.pk])).status_code == 404
    response = post_prompts(client, campaign, fal_provider, prompts="sneak one in")
    assert response.status_code == 404
    assert Generation.objects.count() == 1 and Generation.objects.get().state == "queued"


# --- fal's webhook --------------------------------------------------------------------------------------------


@pytest.fixture
def caught_webhook(db, campaign, fal_provider, simulator, settings, webhook_catcher):
    """A generation handed back to wait for fal, and the webhook fal then signed and sent for it."""
    settings.PIXELMILL_FAL_WEBHOOK_BASE_URL = webhook_catcher.url
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    settings.PIXELMILL_GENERATION_RECHECK_SECONDS = 600
    simulator.configure(provider="fal", fal_queue_seconds=0.1)
    queue_generations(campaign, fal_provider, [PromptSpec("A kite", seed=9, image_size="256x256")])
    generation = campaign.generations.get()
    assert run_generation_task(generation.pk, 1) == "waiting"
    assert webhook_catcher.arrived.wait(10), "fal never called back"
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 5
    path, headers, body = webhook_catcher.caught[0]
    return generation, path, {k: v for k, v in headers.items() if k.lower().startswith("x-fal-")}, body


def deliver(client: Client, path: str, headers: dict[str, str], body: bytes):
    return client.post(path, data=body, content_type="application/json", headers=headers)


def test_a_validly_signed_webhook_completes_the_generation_and_a_replay_changes_nothing(
    caught_webhook, campaign, django_capture_on_commit_callbacks, simulator
):
    generation, path, headers, body = caught_webhook
    anonymous = Client(enforce_csrf_checks=True)  # fal has neither a session nor a CSRF token
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(anonymous, path, headers, body)
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    assert GENERATIONS.job_id(generation.pk, 2) in get_process_queue().get_job_ids()

    with django_capture_on_commit_callbacks(execute=True):
        drain_until(lambda: Generation.objects.get(pk=generation.pk).state == "succeeded", timeout=10)
    assert campaign.sources.count() == 1

    again = deliver(anonymous, path, headers, body)
    assert again.status_code == 200 and again.json() == {"status": "already finished"}
    generation.refresh_from_db()
    assert (generation.state, generation.attempts, campaign.sources.count()) == ("succeeded", 2, 1)
    assert len(submits(simulator)) == 1


def test_a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(
    caught_webhook, django_capture_on_commit_callbacks
):
    generation, path, headers, body = caught_webhook
    tampered = body.replace(b'"OK"', b'"ERROR"')
    forged = {**headers, "X-Fal-Webhook-Signature": "00" * 64}
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(Client(), path, headers, tampered).status_code == 401
        assert deliver(Client(), path, forged, body).status_code == 401
    assert GENERATIONS.job_id(generation.pk, 2) not in get_process_queue().get_job_ids()
    assert Generation.objects.get(pk=generation.pk).state == "queued"


def test_a_stale_or_incomplete_webhook_is_a_bad_request(caught_webhook, django_capture_on_commit_callbacks):
    generation, path, headers, body = caught_webhook
    stale = {**headers, "X-Fal-Webhook-Timestamp": str(int(time.time()) - 600)}
    incomplete = {k: v for k, v in headers.items() if k.lower() != "x-fal-webhook-user-id"}
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(Client(), path, stale, body).status_code == 400
        assert deliver(Client(), path, incomplete, body).status_code == 400
    assert GENERATIONS.job_id(generation.pk, 2) not in get_process_queue().get_job_ids()


def test_a_webhook_for_an_unknown_request_is_404_and_a_wrong_token_never_reaches_the_handler(caught_webhook):
    generation, path, headers, body = caught_webhook
    unknown = {**headers, "X-Fal-Webhook-Request-Id": "not-one-of-ours"}
    response = deliver(Client(), path, unknown, body)
    assert response.status_code == 404 and response.json() == {"error": "unknown request"}
    wrong = reverse("fal-webhook", args=["guessed-token"])
    assert deliver(Client(), wrong, headers, body).status_code == 404
    generation.refresh_from_db()
    assert json.loads(body)["request_id"] == generation.request_id and generation.state == "queued"
