"""Remote steps against the provider simulator over a real socket: wire formats, retries, limits, the cache."""

from __future__ import annotations

import io
import logging
import time
from decimal import Decimal

import pytest
from PIL import Image

from dashboard.models import Campaign, StepResult, Task
from dashboard.services import process_campaign, requeue_tasks
from jobs.errors import DeferredError, PermanentError, TransientError
from jobs.operations import build_operation
from jobs.providers import ProviderConfig
from jobs.providers.adapters import adapter_for
from jobs.providers.client import ClientPolicy, ProviderClient
from jobs.ratelimit import ProviderLimiter, ProviderLimits
from jobs.tasks import process_task
from tests.conftest import run_burst_worker
from tests.factories import add_source, make_remote_recipe
from tests.jobs.conftest import SIM_KEY_ENV
from tests.jobs.images import jpeg, png, product_on_white
from tests.polling import wait_until

FAST = ClientPolicy(tries=4, backoff_base=0.01, backoff_cap=0.05)


def config_for(simulator, kind: str, **changes) -> ProviderConfig:
    fields = {
        "slug": f"sim-{kind}",
        "name": f"Simulated {kind}",
        "kind": kind,
        "base_url": simulator.url(kind),
        "api_key_env": SIM_KEY_ENV,
        "requests_per_second": 100.0,
        "concurrency": 4,
        "timeout_seconds": 5.0,
    }
    return ProviderConfig(**{**fields, **changes})


def calls(simulator, provider: str) -> list[dict]:
    return [entry for entry in simulator.log() if entry["provider"] == provider]


@pytest.fixture
def product_png():
    return png(product_on_white(320, 240))


@pytest.mark.parametrize("kind", ["pixelpanda", "removebg", "photoroom", "rembg"])
def test_each_adapter_removes_a_background_in_its_providers_wire_format(
    simulator, redis_conn, kind, product_png
):
    with ProviderClient(config_for(simulator, kind), connection=redis_conn, policy=FAST) as client:
        result = adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")

    image = Image.open(io.BytesIO(result.data))
    assert image.mode == "RGBA" and image.size == (320, 240)
    assert image.getpixel((2, 2))[3] == 0, "the white corner became transparent"
    assert image.getpixel((160, 120))[3] == 255, "the product stayed"
    [call] = calls(simulator, kind)
    assert call["outcome"] == "ok" and call["method"] == "POST"
    if kind == "photoroom":
        assert 0.0 <= result.meta["uncertainty_score"] <= 1.0
    if kind == "removebg":
        assert result.meta["credits_charged"] == 1.0


def test_pixelpanda_upscale_sends_the_scale_factor_and_downloads_the_processed_url(simulator, redis_conn):
    with ProviderClient(config_for(simulator, "pixelpanda"), connection=redis_conn, policy=FAST) as client:
        result = adapter_for(client).run(
            build_operation("upscale", {"factor": 2}), png(product_on_white(100, 80)), "image/png"
        )
    assert Image.open(io.BytesIO(result.data)).size == (200, 160)
    assert result.request_id and result.meta["execution_time_ms"] is not None
    assert [entry["endpoint"] for entry in calls(simulator, "pixelpanda")][-1].endswith("upscale")


def test_no_api_key_or_signed_result_url_reaches_the_logs(simulator, redis_conn, caplog, product_png):
    """Logging configured as in production (httpx quiet) and everything else at DEBUG: a whole call,
    including the download of the result URL, writes neither the key nor that URL."""
    caplog.set_level(logging.DEBUG)
    with ProviderClient(config_for(simulator, "pixelpanda"), connection=redis_conn, policy=FAST) as client:
        adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert any(record.name == "pixelmill.providers" for record in caplog.records), "the call was logged"
    # The simulator's own log is the provider's, not ours.
    ours = [record for record in caplog.records if record.name.split(".")[0] != "simulator"]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in ours)
    assert "sim-key" not in logged
    assert "/files/" not in logged, "the result URL stays out of the logs"


def test_a_wrong_key_is_a_permanent_error_with_the_providers_words(
    simulator, redis_conn, monkeypatch, product_png
):
    monkeypatch.setenv(SIM_KEY_ENV, "not-the-key")
    with (
        ProviderClient(config_for(simulator, "removebg"), connection=redis_conn, policy=FAST) as client,
        pytest.raises(PermanentError) as error,
    ):
        adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert error.value.http_status == 403 and error.value.provider == "sim-removebg"
    assert len(calls(simulator, "removebg")) == 1


def test_a_400_fails_after_exactly_one_call_showing_the_providers_reason(simulator, redis_conn, product_png):
    simulator.configure(provider="removebg", fail_next=["400"])
    with (
        ProviderClient(config_for(simulator, "removebg"), connection=redis_conn, policy=FAST) as client,
        pytest.raises(PermanentError) as error,
    ):
        adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert "Could not identify foreground" in error.value.message
    assert len(calls(simulator, "removebg")) == 1


def test_5xx_resets_and_timeouts_are_retried_with_backoff_until_one_succeeds(
    simulator, redis_conn, product_png, caplog
):
    # The timeout also bounds the call that succeeds (a real cut-out): 0.5 s timed it out on a loaded
    # machine. 3 s leaves it room, and the 5 s hang still outlasts the client's wait by far.
    simulator.configure(provider="photoroom", fail_next=["503", "reset", "timeout"], hang_seconds=5.0)
    config = config_for(simulator, "photoroom", timeout_seconds=3.0)
    caplog.set_level(logging.INFO, logger="pixelmill.providers")
    with ProviderClient(config, connection=redis_conn, policy=FAST) as client:
        result = adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert result.data
    tried = [record.outcome for record in caplog.records if record.name == "pixelmill.providers"]
    assert tried == ["http_503", "connection_failed", "timeout", "ok"]
    # The hung request is logged when the simulator gives up on it, after the client has.
    wait_until(lambda: [e for e in calls(simulator, "photoroom") if e["outcome"] == "timeout"], timeout=15)
    outcomes = [entry["outcome"] for entry in sorted(calls(simulator, "photoroom"), key=lambda e: e["seq"])]
    assert outcomes == ["http_503", "reset", "timeout", "ok"]


def test_transient_errors_beyond_the_inline_tries_surface_for_a_task_level_retry(
    simulator, redis_conn, product_png
):
    simulator.configure(provider="rembg", fail_next=["503"] * 4)
    policy = ClientPolicy(tries=2, backoff_base=0.01, backoff_cap=0.02)
    with (
        ProviderClient(config_for(simulator, "rembg"), connection=redis_conn, policy=policy) as client,
        pytest.raises(TransientError) as error,
    ):
        adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert error.value.code == "http_503" and len(calls(simulator, "rembg")) == 2


def test_a_429_is_honoured_whether_retry_after_is_seconds_or_an_http_date(simulator, redis_conn, product_png):
    # The simulator alternates the two forms of Retry-After between consecutive 429s.
    simulator.configure(provider="removebg", fail_next=["429", "429", "ok"], retry_after_seconds=1.0)
    with ProviderClient(config_for(simulator, "removebg"), connection=redis_conn, policy=FAST) as client:
        adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    log = sorted(calls(simulator, "removebg"), key=lambda entry: entry["seq"])
    assert [entry["outcome"] for entry in log] == ["injected_429", "injected_429", "ok"]
    for earlier, later in zip(log, log[1:], strict=False):
        assert later["started"] >= earlier["retry_deadline"], "no request before the Retry-After deadline"


def test_the_cool_down_a_429_sets_is_seen_by_another_worker(simulator, redis_conn, product_png):
    simulator.configure(provider="removebg", fail_next=["429"], retry_after_seconds=5.0)
    config = config_for(simulator, "removebg")
    policy = ClientPolicy(tries=2, max_inline_wait=0.5, backoff_base=0.01)
    with (
        ProviderClient(config, connection=redis_conn, policy=policy) as first,
        pytest.raises(Exception) as error,
    ):
        adapter_for(first).run(build_operation("remove_background", {}), product_png, "image/png")
    assert error.value.code == "rate_limited" and error.value.retry_after >= 4
    other = ProviderLimiter(
        redis_conn, "sim-removebg", ProviderLimits(requests_per_second=100, concurrency=4)
    )
    assert other.try_acquire("another-worker") >= 4.0
    assert len(calls(simulator, "removebg")) == 1


def test_a_long_shared_wait_hands_the_call_back_instead_of_sleeping(simulator, redis_conn, product_png):
    limiter = ProviderLimiter(
        redis_conn, "sim-removebg", ProviderLimits(requests_per_second=100, concurrency=4)
    )
    limiter.cool_down(30)
    with ProviderClient(config_for(simulator, "removebg"), connection=redis_conn, policy=FAST) as client:
        started = time.monotonic()
        with pytest.raises(DeferredError) as error:
            adapter_for(client).run(build_operation("remove_background", {}), product_png, "image/png")
    assert time.monotonic() - started < 1 and error.value.retry_after > 25
    assert calls(simulator, "removebg") == []


# --- through a real worker ------------------------------------------------------------------------


pytestmark = pytest.mark.django_db(transaction=True)


def test_a_recipe_with_two_remote_steps_renders_its_outputs(simulator, make_provider, campaign, redis_conn):
    removebg, pixelpanda = make_provider("removebg"), make_provider("pixelpanda")
    recipe = make_remote_recipe(
        "Remote pack",
        [("remove_background", {}, removebg), ("upscale", {"factor": 2}, pixelpanda), ("canvas", {}, None)],
    )
    add_source(campaign, jpeg(product_on_white(240, 180)))
    process_campaign(campaign, [recipe])
    run_burst_worker()

    task = Task.objects.get()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert [output.name for output in task.outputs.all()] == ["square"]
    assert [(c["step"], c["provider"], c["cached"]) for c in task.provider_calls] == [
        ("remove_background", "sim-removebg", False),
        ("upscale", "sim-pixelpanda", False),
    ]
    assert StepResult.objects.count() == 2


def test_consecutive_steps_at_pixelpanda_travel_as_one_batch_call(
    simulator, make_provider, campaign, redis_conn
):
    pixelpanda = make_provider("pixelpanda")
    recipe = make_remote_recipe(
        "Batched",
        [("remove_background", {}, pixelpanda), ("upscale", {"factor": 2}, pixelpanda), ("canvas", {}, None)],
    )
    add_source(campaign, jpeg(product_on_white(240, 180)))
    process_campaign(campaign, [recipe])
    run_burst_worker()

    task = Task.objects.get()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert [entry["endpoint"] for entry in calls(simulator, "pixelpanda")] == ["batch"]
    assert [(c["step"], c["cached"]) for c in task.provider_calls] == [("remove_background+upscale", False)]
    assert StepResult.objects.count() == 1


def test_a_pixelpanda_without_batch_gets_one_call_per_step(simulator, make_provider, campaign, redis_conn):
    pixelpanda = make_provider("pixelpanda", options={"batch": False})
    recipe = make_remote_recipe(
        "Unbatched", [("remove_background", {}, pixelpanda), ("enhance", {}, pixelpanda)]
    )
    add_source(campaign, jpeg(product_on_white(240, 180)))
    process_campaign(campaign, [recipe])
    run_burst_worker()

    assert Task.objects.get().state == Task.State.SUCCEEDED
    assert [entry["endpoint"] for entry in calls(simulator, "pixelpanda")] == ["remove-background", "enhance"]


def test_a_duplicate_delivery_of_a_remote_task_calls_no_provider(
    simulator, make_provider, campaign, redis_conn
):
    removebg = make_provider("removebg")
    recipe = make_remote_recipe("Cut-out", [("remove_background", {}, removebg)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    process_campaign(campaign, [recipe])
    task = Task.objects.get()
    assert process_task(task.pk, 1) == "succeeded"
    assert process_task(task.pk, 1) == "skipped", "RQ delivering the same job again"
    assert len(calls(simulator, "removebg")) == 1


def run_until_the_second_step_is_refused(simulator, make_provider, campaign) -> None:
    """One image through a cut-out (paid, cached) and an enhance that the provider refuses once (400)."""
    removebg, pixelpanda = make_provider("removebg"), make_provider("pixelpanda")
    recipe = make_remote_recipe(
        "Two remote", [("remove_background", {}, removebg), ("enhance", {}, pixelpanda)]
    )
    add_source(campaign, jpeg(product_on_white(240, 180)))
    simulator.configure(provider="pixelpanda", fail_next=["400"])
    process_campaign(campaign, [recipe])
    run_burst_worker()


def test_a_requeue_after_a_later_step_failed_reuses_the_paid_result(
    simulator, make_provider, campaign, redis_conn
):
    run_until_the_second_step_is_refused(simulator, make_provider, campaign)
    task = Task.objects.get()
    assert task.state == Task.State.FAILED and task.error_code == "provider_rejected"
    assert task.error_step == "enhance" and "Simulated pixelpanda" in task.error_message

    assert requeue_tasks(Task.objects.all()) == 1
    run_burst_worker()
    task.refresh_from_db()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert len(calls(simulator, "removebg")) == 1, "the background removal was paid for once"
    assert [c["cached"] for c in task.provider_calls if c["step"] == "remove_background"] == [False, True]


def test_the_step_cache_keeps_paid_results_in_the_bucket(
    simulator, make_provider, campaign, redis_conn, s3_bucket
):
    run_until_the_second_step_is_refused(simulator, make_provider, campaign)
    (cached,) = StepResult.objects.all()
    assert cached.file.name.startswith("stepcache/") and cached.file.name in s3_bucket.objects()

    assert requeue_tasks(Task.objects.all()) == 1
    run_burst_worker()
    task = Task.objects.get()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert len(calls(simulator, "removebg")) == 1, "the cached cut-out was read back from the bucket"
    assert {output.file.name for output in task.outputs.all()} <= s3_bucket.objects().keys()


def test_out_of_credits_pauses_the_campaign_until_resumed(
    simulator, make_provider, campaign, redis_conn, marketer_client
):
    removebg = make_provider("removebg")
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    for n in range(3):
        add_source(campaign, jpeg(product_on_white(200 + n * 8, 150)), name=f"{n}.jpg")
    simulator.configure(provider="removebg", credits=0)
    process_campaign(campaign, [recipe])
    run_burst_worker()

    campaign.refresh_from_db()
    assert "Insufficient credits" in campaign.remote_paused_reason
    assert set(campaign.tasks.values_list("state", flat=True)) == {Task.State.PAUSED}
    assert len([e for e in calls(simulator, "removebg") if e["status"] == 402]) == 1, (
        "one 402, then no more calls"
    )
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "Remote work is paused" in page and "Insufficient credits" in page

    simulator.configure(provider="removebg", credits=100)
    response = marketer_client.post(f"/campaigns/{campaign.pk}/resume-remote/")
    assert response.status_code == 302
    run_burst_worker()
    assert set(campaign.tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    assert Campaign.objects.get(pk=campaign.pk).remote_paused_reason == ""


def test_an_open_circuit_sends_the_step_to_the_fallback_provider(
    simulator, make_provider, campaign, redis_conn, settings
):
    settings.PIXELMILL_BREAKER_MIN_CALLS = 2
    settings.PIXELMILL_BREAKER_FAILURE_RATE = 0.5
    settings.PIXELMILL_PROVIDER_BACKOFF_SECONDS = 0.01
    photoroom, removebg = make_provider("photoroom"), make_provider("removebg")
    recipe = make_remote_recipe("With fallback", [("remove_background", {}, photoroom, removebg)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    simulator.configure(provider="photoroom", p503=1.0)
    process_campaign(campaign, [recipe])
    run_burst_worker()

    task = Task.objects.get()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert [c["provider"] for c in task.provider_calls] == ["sim-removebg"]
    assert len(calls(simulator, "photoroom")) == 2, "the breaker opened after two failures"


def test_a_long_rate_limit_wait_defers_the_task_without_spending_an_attempt(
    simulator, make_provider, campaign, redis_conn
):
    removebg = make_provider("removebg")
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    process_campaign(campaign, [recipe])
    ProviderLimiter(
        redis_conn, "sim-removebg", ProviderLimits(requests_per_second=1, concurrency=1)
    ).cool_down(60)
    run_burst_worker()

    task = Task.objects.get()
    assert (task.state, task.attempts, task.deferrals, task.failed_attempts) == (Task.State.QUEUED, 1, 1, 0)
    assert "Retry-After" in task.error_message and task.next_attempt_at is not None
    assert calls(simulator, "removebg") == []


def test_a_budget_cap_stops_paid_calls_when_reached_and_raising_it_finishes_the_run(
    simulator, make_provider, campaign, redis_conn, marketer_client
):
    from decimal import Decimal

    from dashboard.services import set_budget_cap

    removebg = make_provider("removebg", price_per_call=Decimal("0.20"))
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    for n in range(4):
        add_source(campaign, jpeg(product_on_white(200 + n * 8, 150)), name=f"{n}.jpg")
    Campaign.objects.filter(pk=campaign.pk).update(budget_cap=Decimal("0.50"))
    process_campaign(campaign, [recipe])
    run_burst_worker()

    campaign.refresh_from_db()
    states = sorted(campaign.tasks.values_list("state", flat=True))
    assert states == [Task.State.PAUSED] * 2 + [Task.State.SUCCEEDED] * 2
    assert len(calls(simulator, "removebg")) == 2, "no call past the cap"
    assert campaign.remote_spent == Decimal("0.40") and campaign.remote_paused_code == "budget_reached"
    assert "budget cap of 0.50 USD is reached" in campaign.remote_paused_reason
    page = marketer_client.get(campaign.get_absolute_url()).content.decode()
    assert "Budget cap reached: remote work is paused." in page

    assert set_budget_cap(campaign, Decimal("1.00")) == 2
    run_burst_worker()
    campaign.refresh_from_db()
    assert set(campaign.tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    assert campaign.remote_spent == Decimal("0.80") and campaign.remote_paused_reason == ""


def test_a_call_the_provider_refused_is_not_counted_against_the_budget(
    simulator, make_provider, campaign, redis_conn
):
    from decimal import Decimal

    removebg = make_provider("removebg", price_per_call=Decimal("0.20"))
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    simulator.configure(provider="removebg", fail_next=["400"])
    process_campaign(campaign, [recipe])
    run_burst_worker()
    assert Task.objects.get().error_code == "provider_rejected"
    assert Campaign.objects.get(pk=campaign.pk).remote_spent == 0


def test_images_one_provider_rejected_succeed_when_requeued_with_another(
    simulator, make_provider, campaign, redis_conn
):
    from dashboard.services import requeue_differently

    photoroom = make_provider("photoroom")
    make_provider("removebg")
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, photoroom)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    simulator.configure(provider="photoroom", fail_next=["400"])
    process_campaign(campaign, [recipe])
    run_burst_worker()
    task = Task.objects.get()
    assert (task.state, task.error_code) == (Task.State.FAILED, "provider_rejected")

    requeue_differently(Task.objects.all(), provider_overrides={"remove_background": "sim-removebg"})
    run_burst_worker()
    task.refresh_from_db()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    assert [c["provider"] for c in task.provider_calls] == ["sim-removebg"]
    assert (len(calls(simulator, "photoroom")), len(calls(simulator, "removebg"))) == (1, 1)


def test_a_provider_slower_than_the_timeout_is_paid_once_across_tries_and_attempts(
    simulator, make_provider, campaign, redis_conn, settings, caplog
):
    """The provider takes 2.5 s, the client gives up after 1 s: both inline tries of the first attempt
    time out and the second attempt asks again, yet the provider bills the image once. Every request
    carries the same Idempotency-Key, so the repeats wait for the first call and get its answer."""
    settings.PIXELMILL_PROVIDER_TRIES = 2
    settings.PIXELMILL_PROVIDER_BACKOFF_SECONDS = 0.01
    removebg = make_provider("removebg", timeout_seconds=1.0, price_per_call=Decimal("0.20"))
    recipe = make_remote_recipe("Cut-outs", [("remove_background", {}, removebg)])
    add_source(campaign, jpeg(product_on_white(240, 180)))
    simulator.configure(provider="removebg", latency_ms=2500)
    process_campaign(campaign, [recipe])
    task = Task.objects.get()
    caplog.set_level(logging.INFO, logger="pixelmill.providers")

    first, second = process_task(task.pk, 1), process_task(task.pk, 2)

    sent = [record for record in caplog.records if getattr(record, "endpoint", None) == "remove_background"]
    # The provider goes on with every request after the client has stopped waiting: let them all end.
    wait_until(lambda: len(calls(simulator, "removebg")) >= len(sent), timeout=15)
    paid = [entry for entry in calls(simulator, "removebg") if entry["outcome"] == "ok"]
    assert len(paid) == 1, f"the provider billed {len(paid)} of our {len(sent)} requests"
    assert (first, second, len(sent)) == ("timeout", "succeeded", 3), "two tries, then a second attempt"
    task.refresh_from_db()
    assert task.state == Task.State.SUCCEEDED, task.error_message
    # The timed-out first attempt stays booked (it may have been billed, and it was); the replayed answer
    # of the second is not booked again: the campaign's spend matches the provider's bill.
    campaign.refresh_from_db()
    assert campaign.remote_spent == Decimal("0.20")
