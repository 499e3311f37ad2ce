"""Generation from prompts against the simulated fal queue, through real Redis and burst workers."""

# ruff: noqa: F811 - the fixtures imported from tests/jobs/fal.py are named again as test arguments

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from rq.job import Job

from dashboard.models import Generation, SourceImage, Task, WebhookDelivery
from dashboard.prompts import PromptSpec
from dashboard.services import fal_webhook_token, queue_generations
from jobs.generation import cancel_generation, run_generation_task
from jobs.providers.client import ClientPolicy, ProviderClient
from jobs.providers.fal import FalQueue, ImageSizeError, fal_image_size
from jobs.queueing import GENERATIONS, get_process_queue
from jobs.reconciler import reconcile_task
from tests.jobs.fal import (  # noqa: F401 (fixtures)
    fal_provider,
    fast_generation,
    submits,
    webhook_catcher,
)
from tests.polling import drain_until, wait_until

pytestmark = pytest.mark.usefixtures("redis_conn")


def generate(campaign, provider, *specs: PromptSpec) -> list[Generation]:
    queue_generations(campaign, provider, specs)
    return list(campaign.generations.order_by("pk"))


def settled(*generations: Generation) -> bool:
    states = Generation.objects.filter(pk__in=[g.pk for g in generations]).values_list("state", flat=True)
    return all(state in Generation.TERMINAL_STATES for state in states)


def test_image_sizes_translate_to_fal_presets_or_width_and_height():
    assert fal_image_size("landscape_16_9") == "landscape_16_9"
    assert fal_image_size("1024x768") == {"width": 1024, "height": 768}
    for bad in ("huge", "10x10", "1024", "5000x5000"):
        with pytest.raises(ImageSizeError):
            fal_image_size(bad)


@pytest.mark.django_db(transaction=True)
def test_prompts_become_source_images_that_run_through_the_campaigns_recipes(
    campaign, ready_recipes, fal_provider, simulator
):
    campaign.recipes.add(ready_recipes["sale-banner"])
    generations = generate(
        campaign,
        fal_provider,
        PromptSpec("Red sneakers on a sunny beach", seed=1, image_size="512x512", num_images=2),
        PromptSpec("A cozy cabin in snowy woods", seed=2, image_size="512x512"),
    )
    drain_until(lambda: settled(*generations) and not Task.objects.unfinished().exists())

    assert set(Generation.objects.values_list("state", flat=True)) == {"succeeded"}
    sources = list(SourceImage.objects.filter(campaign=campaign).order_by("pk"))
    assert [s.display_name for s in sources] == [
        "red-sneakers-on-a-sunny-beach-1.jpg",
        "red-sneakers-on-a-sunny-beach-2.jpg",
        "a-cozy-cabin-in-snowy-woods.jpg",
    ]
    assert {(s.origin, s.width, s.height) for s in sources} == {("generated", 512, 512)}
    assert [s.generation_id for s in sources] == [generations[0].pk, generations[0].pk, generations[1].pk]
    tasks = Task.objects.filter(campaign=campaign)
    assert tasks.count() == 3 and set(tasks.values_list("state", flat=True)) == {"succeeded"}
    assert {o.name for o in tasks[0].outputs.all()} == {
        "banner",
        "banner-webp",
        "banner-small",
        "banner-small-webp",
    }
    assert [e["status"] for e in submits(simulator)] == [200, 200]  # the simulator checked "Key sim-key"


@pytest.mark.django_db(transaction=True)
def test_the_campaign_webhook_is_recorded_once_the_last_generation_of_the_run_finishes(
    campaign, fal_provider, webhook_catcher
):
    campaign.webhook_url = webhook_catcher.url + "/hook"
    campaign.save()
    generations = generate(
        campaign,
        fal_provider,
        PromptSpec("A tent", seed=1, image_size="256x256"),
        PromptSpec("A canoe", seed=2, image_size="256x256"),
    )
    drain_until(lambda: settled(*generations))

    [delivery] = WebhookDelivery.objects.filter(campaign=campaign)
    assert delivery.run_number == 1 and delivery.event == "campaign.run.finished"


@pytest.mark.django_db(transaction=True)
def test_the_same_prompt_and_seed_twice_gives_one_source_but_two_generations(campaign, fal_provider):
    spec = PromptSpec("A blue bottle on sand", seed=7, image_size="256x256")
    generations = generate(campaign, fal_provider, spec, spec)
    drain_until(lambda: settled(*generations))

    assert list(Generation.objects.values_list("state", flat=True)) == ["succeeded", "succeeded"]
    assert campaign.sources.count() == 1
    assert campaign.sources.get().generation_id == generations[0].pk


@pytest.mark.django_db(transaction=True)
def test_a_503_on_submit_is_retried_and_fal_is_paid_exactly_once(campaign, fal_provider, simulator, settings):
    settings.PIXELMILL_PROVIDER_TRIES = 1  # no inline retry: the attempt itself fails and is retried
    simulator.configure(provider="fal", fail_next=["503"])
    [generation] = generate(campaign, fal_provider, PromptSpec("A lamp", seed=3, image_size="256x256"))
    drain_until(lambda: settled(generation))

    generation.refresh_from_db()
    assert (generation.state, generation.attempts) == ("succeeded", 2)
    assert [e["status"] for e in submits(simulator)] == [503, 200]
    assert generation.request_id == submits(simulator, 200)[0]["request_id"]


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing in the job catches it."""


@pytest.mark.django_db(transaction=True)
def test_a_job_redelivered_after_the_submit_polls_the_paid_request_instead_of_submitting_again(
    campaign, fal_provider, simulator, monkeypatch
):
    [generation] = generate(campaign, fal_provider, PromptSpec("A teapot", seed=4, image_size="256x256"))
    real_status = FalQueue.status

    def dies_at_first_poll(self, request):
        monkeypatch.setattr(FalQueue, "status", real_status)
        raise WorkerKilled

    monkeypatch.setattr(FalQueue, "status", dies_at_first_poll)
    with pytest.raises(WorkerKilled):
        run_generation_task(generation.pk, 1)
    generation.refresh_from_db()
    assert generation.state == "running" and generation.request_id  # committed before the worker died
    assert run_generation_task(generation.pk, 1) == "skipped"  # RQ delivering the same job again

    Generation.objects.filter(pk=generation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert reconcile_task()["generations_worker_lost"] == 1
    drain_until(lambda: settled(generation))

    generation.refresh_from_db()
    assert (generation.state, generation.attempts) == ("succeeded", 2)
    assert len(submits(simulator)) == 1
    assert campaign.sources.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_400_on_submit_fails_at_once_with_the_providers_reason(campaign, fal_provider, simulator):
    simulator.configure(provider="fal", fail_next=["400"])
    [generation] = generate(campaign, fal_provider, PromptSpec("A chair", image_size="256x256"))
    drain_until(lambda: settled(generation))

    generation.refresh_from_db()
    assert (generation.state, generation.attempts, generation.request_id) == ("failed", 1, "")
    assert "The image could not be processed" in generation.error_message
    assert not campaign.sources.exists()


def test_a_bug_while_generating_fails_at_once_with_a_ref_and_the_traceback_for_staff(
    campaign, fal_provider, monkeypatch, admin_client
):
    from jobs import generation as generation_module

    def broken(*args, **kwargs):
        raise KeyError("images")

    monkeypatch.setattr(generation_module, "run_attempt", broken)
    [generation] = generate(campaign, fal_provider, PromptSpec("A chair", image_size="256x256"))
    assert run_generation_task(generation.pk, 1) == "internal_error"
    generation.refresh_from_db()
    assert (generation.state, generation.attempts) == ("failed", 1)
    assert "while generating these images (error ref " in generation.error_message
    assert "KeyError" not in generation.error_message
    page = admin_client.get(
        reverse("admin:dashboard_generation_change", args=[generation.pk])
    ).content.decode()
    assert "KeyError: &#x27;images&#x27;" in page and "Traceback (most recent call last)" in page


@pytest.mark.django_db(transaction=True)
def test_a_prompt_fal_finds_invalid_fails_with_fals_validation_message(campaign, fal_provider, simulator):
    """fal answers 422 with a pydantic list; the marketer reads which field and why, not "HTTP 422"."""
    [generation] = generate(campaign, fal_provider, PromptSpec("A poster", image_size="4000x4000"))
    drain_until(lambda: settled(generation))

    generation.refresh_from_db()
    assert generation.state == "failed"
    assert "refused the prompt: image_size: image_size must be one of" in generation.error_message


@pytest.mark.django_db(transaction=True)
def test_a_long_fal_queue_hands_the_worker_back_without_counting_a_failure(
    campaign, fal_provider, simulator, settings
):
    simulator.configure(provider="fal", fal_queue_seconds=30)
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    settings.PIXELMILL_GENERATION_RECHECK_SECONDS = 60
    [generation] = generate(campaign, fal_provider, PromptSpec("A vase", image_size="256x256"))

    assert run_generation_task(generation.pk, 1) == "waiting"
    generation.refresh_from_db()
    assert (generation.state, generation.attempts, generation.deferrals) == ("queued", 1, 1)
    assert generation.next_attempt_at > timezone.now() + timedelta(seconds=50)
    scheduled = get_process_queue().scheduled_job_registry.get_job_ids()
    assert scheduled == [GENERATIONS.job_id(generation.pk, 2)]


@pytest.mark.django_db(transaction=True)
def test_cancel_sends_put_to_fal_and_marks_the_generation_cancelled(
    campaign, fal_provider, simulator, settings
):
    simulator.configure(provider="fal", fal_queue_seconds=30)
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    [generation] = generate(campaign, fal_provider, PromptSpec("A rug", image_size="256x256"))
    assert run_generation_task(generation.pk, 1) == "waiting"
    generation.refresh_from_db()

    assert cancel_generation(generation) is True
    generation.refresh_from_db()
    assert generation.state == "cancelled" and generation.finished_at
    [put] = [e for e in simulator.log(kind="api") if e["method"] == "PUT"]
    assert (put["endpoint"], put["status"], put["request_id"]) == ("cancel", 202, generation.request_id)
    assert run_generation_task(generation.pk, 2) == "skipped"  # the recheck that was already scheduled
    assert cancel_generation(generation) is False


@pytest.mark.django_db(transaction=True)
def test_a_generation_cancelled_while_a_worker_polls_it_is_never_stored(
    campaign, fal_provider, simulator, monkeypatch
):
    simulator.configure(provider="fal", fal_queue_seconds=0.3)
    [generation] = generate(campaign, fal_provider, PromptSpec("A mirror", image_size="256x256"))
    real_status = FalQueue.status

    def cancel_during_poll(self, request):
        Generation.objects.filter(pk=generation.pk).update(state="cancelled")
        return real_status(self, request)

    monkeypatch.setattr(FalQueue, "status", cancel_during_poll)
    assert run_generation_task(generation.pk, 1) == "cancelled"
    assert not campaign.sources.exists()


@pytest.mark.django_db(transaction=True)
def test_reconciler_requeues_a_generation_whose_job_redis_lost(campaign, fal_provider, redis_conn):
    [generation] = generate(campaign, fal_provider, PromptSpec("A clock", image_size="256x256"))
    Generation.objects.filter(pk=generation.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    redis_conn.flushdb()  # Redis restarted empty

    assert reconcile_task()["generations_queue_lost"] == 1
    assert Job.exists(GENERATIONS.job_id(generation.pk, 2), connection=redis_conn)
    generation.refresh_from_db()
    assert (generation.attempts, generation.error_code) == (1, "queue_lost")
    assert reconcile_task()["generations_queue_lost"] == 0


@pytest.mark.django_db(transaction=True)
def test_reconciler_marks_a_generation_dead_when_its_last_worker_died(campaign, fal_provider):
    [generation] = generate(campaign, fal_provider, PromptSpec("A fern", image_size="256x256"))
    Generation.objects.filter(pk=generation.pk).update(
        state="running", attempts=5, max_attempts=5, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile_task()["generations_dead"] == 1
    generation.refresh_from_db()
    assert (generation.state, generation.error_code) == ("dead", "worker_lost")


@pytest.mark.django_db(transaction=True)
def test_fals_signed_webhook_brings_a_waiting_generation_to_completion(
    campaign, fal_provider, simulator, settings, live_server
):
    """End to end: fal (the simulator) POSTs to our webhook URL; we verify it against its JWKS and enqueue."""
    settings.PIXELMILL_FAL_WEBHOOK_BASE_URL = live_server.url
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 0
    settings.PIXELMILL_GENERATION_RECHECK_SECONDS = 600  # only the webhook can bring it back in time
    simulator.configure(provider="fal", fal_queue_seconds=0.2)
    [generation] = generate(campaign, fal_provider, PromptSpec("A kite", seed=9, image_size="256x256"))
    assert run_generation_task(generation.pk, 1) == "waiting"

    wait_until(
        lambda: [e for e in simulator.log(kind="webhook") if e["outcome"] == "ok"],
        message=lambda: f"no accepted webhook: {simulator.log(kind='webhook')}",
    )
    [delivery] = simulator.log(kind="webhook")
    assert delivery["path"].endswith(reverse("fal-webhook", args=[fal_webhook_token()]))
    settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS = 5
    drain_until(lambda: settled(generation), timeout=10)

    generation.refresh_from_db()
    assert (generation.state, generation.attempts) == ("succeeded", 2)
    assert campaign.sources.count() == 1 and len(submits(simulator)) == 1


def test_the_webhook_token_is_derived_from_the_secret_key(settings):
    token = fal_webhook_token()
    settings.SECRET_KEY = "another-deployment"
    assert fal_webhook_token() != token and len(token) == 40


def test_fal_queue_speaks_fals_wire_format(simulator, redis_conn, fal_provider):
    """Submit, poll, fetch and cancel with `Authorization: Key …`, at the URLs fal answered."""
    with ProviderClient(fal_provider.config(), connection=redis_conn, policy=ClientPolicy()) as client:
        fal = FalQueue(client, "fal-ai/flux/schnell")
        request = fal.submit({"prompt": "A pear", "image_size": {"width": 64, "height": 64}})
        assert request.status_url == request.response_url + "/status"
        wait_until(lambda: fal.status(request) == "COMPLETED", timeout=5, interval=0.02)
        [image] = fal.result(request)["images"]
        assert (image["width"], image["height"]) == (64, 64)
        assert httpx.get(image["url"]).headers["content-type"] == "image/jpeg"
        assert fal.cancel(request) is False  # fal answers 400 ALREADY_COMPLETED
    statuses = [e for e in simulator.log(kind="api") if e["endpoint"] == "status"]
    assert statuses and all(e["status"] in (200, 202) for e in statuses)


@pytest.mark.django_db(transaction=True)
def test_a_budget_cap_stops_generations_before_fal_is_paid_and_pauses_the_campaign(
    campaign, fal_provider, simulator
):
    from decimal import Decimal

    from dashboard.models import Campaign

    Provider = type(fal_provider)
    Provider.objects.filter(pk=fal_provider.pk).update(price_per_call=Decimal("0.03"))  # per image
    Campaign.objects.filter(pk=campaign.pk).update(budget_cap=Decimal("0.10"))
    first, second = generate(
        campaign,
        fal_provider,
        PromptSpec("A lamp", seed=1, image_size="256x256", num_images=2),
        PromptSpec("A desk", seed=2, image_size="256x256", num_images=2),
    )
    drain_until(lambda: settled(first, second))

    states = dict(Generation.objects.values_list("prompt", "state"))
    assert states == {"A lamp": "succeeded", "A desk": "failed"}
    assert len(submits(simulator)) == 1, "the second prompt was never sent"
    failed = Generation.objects.get(prompt="A desk")
    assert failed.error_code == "budget_reached" and "budget cap of 0.10 USD" in failed.error_message
    campaign.refresh_from_db()
    assert campaign.remote_spent == Decimal("0.06") and campaign.remote_paused_code == "budget_reached"
