"""RQ entry point for text-to-image generations at fal: submit once, poll, store the images as sources.

Generations follow the tasks' reliability model (dashboard.models.attempts): the row is the source of
truth, a conditional UPDATE claims an attempt, a lease kept by a thread shows the worker is alive, transient
errors retry with backoff and end `dead`, permanent ones end `failed` with fal's reason, waits hand the
attempt back without counting it. What is particular to fal: submitting is the paid call, so the request
id is committed the moment fal answers, and any later attempt only polls that request.
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from dashboard import services
from dashboard.intake import IncomingFile, sanitize_display_name, store_source
from dashboard.models import Campaign, Generation, SourceImage
from jobs.errors import (
    BudgetCapReachedError,
    CreditsExhaustedError,
    DeferredError,
    PermanentError,
    RateLimitedError,
    StepError,
    TransientError,
)
from jobs.leases import LeaseKeeper
from jobs.providers.client import ClientPolicy, ProviderClient
from jobs.providers.fal import DEFAULT_MODEL, FalQueue, FalRequest, ImageSizeError, fal_image_size
from jobs.queueing import GENERATIONS, get_process_queue, schedule_attempt
from jobs.remote import book_call, refund_call
from jobs.retry import error_for_unexpected, handed_back_delay, next_attempt_delay
from jobs.webhooks import campaign_run_finished

logger = logging.getLogger("pixelmill.generation")
UNFINISHED_STATUSES = {"IN_QUEUE", "IN_PROGRESS"}


def run_generation_task(generation_id: int, attempt: int) -> str:
    """Run one attempt of one generation; a duplicate or stale delivery returns without doing anything."""
    if not Generation.claim(generation_id, attempt):
        logger.info("generation skipped", extra={"generation": generation_id, "attempt": attempt})
        return "skipped"
    generation = Generation.objects.select_related("provider", "campaign").get(pk=generation_id)
    started = time.perf_counter()
    try:
        with (
            LeaseKeeper(lambda: generation.heartbeat(attempt), f"generation-{generation_id}"),
            client_for(generation, attempt) as client,
        ):
            return run_attempt(generation, attempt, fal_queue(generation, client), started)
    except CreditsExhaustedError as error:
        # Unlike a recipe step nothing waits on other work here: stop, and Requeue once credits are back.
        if isinstance(error, BudgetCapReachedError):
            # The cap is the campaign's: its recipe steps stop too, and the banner says why.
            Campaign.pause_remote(generation.campaign_id, code=error.code, reason=error.message)
        record_failure(generation, attempt, PermanentError(error.message, code=error.code), started)
        return error.code
    except (DeferredError, RateLimitedError) as error:
        if generation.deferrals < settings.PIXELMILL_MAX_DEFERRALS:
            delay = handed_back_delay(error.retry_after)
            hand_back(generation, attempt, delay, started, outcome="deferred")
            return "deferred"
        record_failure(generation, attempt, TransientError(error.message, code=error.code), started)
        return error.code
    except StepError as error:
        record_failure(generation, attempt, error, started)
        return error.code
    except JobTimeoutException:
        job = get_current_job()
        timeout = TransientError(
            f"Generating took longer than the {job.timeout if job else '?'} s limit.", code="timeout"
        )
        record_failure(generation, attempt, timeout, started)
        return timeout.code
    except Exception as exc:
        # As for recipe tasks: an interruption retries, a bug fails now with a ref staff can look up.
        unexpected = error_for_unexpected(exc, doing="generating these images")
        logger.exception(
            "unexpected error",
            extra={"generation": generation_id, "attempt": attempt, "error_ref": unexpected.ref},
        )
        record_failure(generation, attempt, unexpected, started)
        return unexpected.code


# Generation jobs already in Redis before the rename (scheduled rechecks and retries) name the old
# dotted path; this alias lets them run after a deploy. Remove it one release later.
run_generation = run_generation_task


def run_attempt(generation: Generation, attempt: int, fal: FalQueue, started: float) -> str:
    """Submit unless already submitted, poll for a while, then store the images or hand the attempt back."""
    request = submitted_request(generation)
    if request is None:
        price = generation.provider.price_per_call * generation.num_images
        book_call(generation.campaign_id, price)
        try:
            request = fal.submit(fal_arguments(generation), webhook_url=webhook_url())
        except StepError as error:
            if error.code != "timeout":  # an error answer is not billed; a timed-out submit may have been
                refund_call(generation.campaign_id, price)
            raise
        if not save_request(generation, attempt, request):
            # Cancelled while fal was answering: drop it there too rather than pay for images nobody wants.
            fal.cancel(request)
            generation.log_attempt(attempt, outcome="cancelled", started=started)
            return "cancelled"
    deadline = time.monotonic() + settings.PIXELMILL_GENERATION_POLL_WINDOW_SECONDS
    while (status := fal.status(request)) != "COMPLETED":
        if status == "CANCELLED":
            raise PermanentError(f"{fal.client.name} cancelled the request.", code="cancelled_at_provider")
        if status not in UNFINISHED_STATUSES:
            raise PermanentError(
                f"{fal.client.name} reported an unknown status {status!r}.", code="bad_answer"
            )
        if not generation.running_attempt(attempt).exists():
            generation.log_attempt(attempt, outcome="cancelled", started=started)
            return "cancelled"
        if time.monotonic() >= deadline:
            if generation.deferrals >= settings.PIXELMILL_MAX_DEFERRALS:
                raise TransientError(
                    f"{fal.client.name} has not finished after {generation.deferrals} checks.",
                    code="not_finished",
                )
            # Still queued at fal: free this worker and look again later (or sooner, on fal's webhook).
            hand_back(generation, attempt, settings.PIXELMILL_GENERATION_RECHECK_SECONDS, started, "waiting")
            return "waiting"
        time.sleep(settings.PIXELMILL_GENERATION_POLL_SECONDS)
    images = list(download_images(fal, fal.result(request), display_name_stem(generation.prompt)))
    return finish(generation, attempt, images, started)


def finish(generation: Generation, attempt: int, images: list[IncomingFile], started: float) -> str:
    """Sources, their tasks and the succeeded state commit together; a cancel that came first wins."""
    with transaction.atomic():
        if not generation.mark_succeeded(attempt):
            generation.log_attempt(attempt, outcome="cancelled", started=started)
            return "cancelled"
        for image in images:
            store_source(generation.campaign, image, SourceImage.Origin.GENERATED, generation=generation)
        report = services.process_new_sources(
            generation.campaign, generation.sources.values_list("pk", flat=True)
        )
        transaction.on_commit(lambda: campaign_run_finished(generation.campaign_id))
    generation.log_attempt(attempt, outcome="succeeded", started=started, tasks_created=report.created)
    return "succeeded"


def fal_queue(generation: Generation, client: ProviderClient) -> FalQueue:
    provider = generation.provider
    if provider.kind != provider.Kind.FAL or not provider.is_active:
        raise PermanentError(f"The provider {provider.name} is switched off or cannot generate images.")
    return FalQueue(client, str(provider.options.get("model") or DEFAULT_MODEL))


def client_for(generation: Generation, attempt: int, policy: ClientPolicy | None = None) -> ProviderClient:
    return ProviderClient(
        generation.provider.config(),
        connection=get_process_queue().connection,
        policy=policy or ClientPolicy.from_settings(),
        log_context={
            "generation": generation.pk,
            "attempt": attempt,
            "job_id": GENERATIONS.job_id(generation.pk, attempt),
        },
    )


def fal_arguments(generation: Generation) -> dict[str, Any]:
    try:
        image_size = fal_image_size(generation.image_size)
    except ImageSizeError as error:
        raise PermanentError(f"The {error}.", code="bad_params") from error
    arguments = {"prompt": generation.prompt, "image_size": image_size, "num_images": generation.num_images}
    if generation.seed is not None:
        arguments["seed"] = generation.seed
    return arguments


def submitted_request(generation: Generation) -> FalRequest | None:
    if not generation.request_id:
        return None
    return FalRequest(
        request_id=generation.request_id,
        status_url=generation.status_url,
        response_url=generation.response_url,
        cancel_url=generation.cancel_url,
    )


def download_images(fal: FalQueue, result: dict[str, Any], stem: str) -> Iterator[IncomingFile]:
    """Each image of the result, downloaded through the provider's client and named `stem`-n."""
    images = result.get("images")
    if not isinstance(images, list) or not images:
        raise PermanentError(f"{fal.client.name} finished without any images.", code="no_images")
    for index, image in enumerate(images, start=1):
        url = image.get("url") if isinstance(image, dict) else None
        if not url:
            raise PermanentError(f"{fal.client.name} returned an image without a URL.", code="bad_answer")
        if url.startswith("data:"):
            content_type, data = decode_data_url(url)
        else:
            response = fal.client.download(url)
            content_type, data = response.headers.get("content-type", ""), response.content
        content_type = str(image.get("content_type") or content_type).split(";")[0].strip()
        name = f"{stem}-{index}" if len(images) > 1 else stem
        yield IncomingFile.from_bytes(sanitize_display_name(name + extension_for(content_type)), data)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """fal's sync mode inlines the image as a base64 data URL."""
    header, _, payload = url.partition(",")
    try:
        return header[5:].split(";")[0], base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise PermanentError(
            "The provider returned an unreadable inline image.", code="bad_answer"
        ) from error


def extension_for(content_type: str) -> str:
    return {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}.get(
        content_type, mimetypes.guess_extension(content_type) or ""
    )


def display_name_stem(prompt: str) -> str:
    return slugify(prompt, allow_unicode=True)[:80].strip("-_") or "generated"


# Where the rows move: each UPDATE is conditional on the attempt still being this worker's.


def save_request(generation: Generation, attempt: int, request: FalRequest) -> bool:
    """Commit the paid request at once, whatever happens next; False if the attempt is no longer ours."""
    fields = {
        "request_id": request.request_id[:200],
        "status_url": request.status_url[:500],
        "response_url": request.response_url[:500],
        "cancel_url": request.cancel_url[:500],
        "submitted_at": timezone.now(),
    }
    with transaction.atomic(durable=True):
        Generation.objects.filter(pk=generation.pk, request_id="").update(**fields)
    for name, value in fields.items():
        setattr(generation, name, value)
    return generation.running_attempt(attempt).exists()


def hand_back(generation: Generation, attempt: int, delay: float, started: float, outcome: str) -> None:
    """Free this worker without counting a failure; the next attempt is due after `delay`."""
    at = timezone.now() + timedelta(seconds=delay)
    if generation.requeue(attempt, at=at, count_as_failure=False):
        transaction.on_commit(lambda: schedule_attempt(generation.pk, attempt + 1, at, GENERATIONS))
    generation.log_attempt(attempt, outcome=outcome, started=started, retry_in=delay)


def record_failure(generation: Generation, attempt: int, error: StepError, started: float) -> None:
    """Permanent errors stop here; others retry with backoff until the attempts run out (dead)."""
    permanent = isinstance(error, PermanentError)
    if permanent or attempt - generation.deferrals >= generation.max_attempts:
        if generation.mark_failed(
            attempt, code=error.code, message=error.message, permanent=permanent, error_detail=error.detail
        ):
            transaction.on_commit(lambda: campaign_run_finished(generation.campaign_id))
        outcome = "failed" if permanent else "dead"
        generation.log_attempt(attempt, outcome=outcome, started=started, error=error)
        return
    delay = next_attempt_delay(attempt, retry_after=getattr(error, "retry_after", None))
    at = timezone.now() + timedelta(seconds=delay)
    if generation.requeue(attempt, at=at, code=error.code, message=error.message):
        transaction.on_commit(lambda: schedule_attempt(generation.pk, attempt + 1, at, GENERATIONS))
    generation.log_attempt(attempt, outcome="retry", started=started, error=error, retry_in=delay)


# Entry points for the web process and the reconciler.


def cancel_generation(generation: Generation) -> bool:
    """Stop a generation that has not finished: cancelled here, and dropped at fal if it was submitted.

    Returns False when it had already finished. A worker polling it notices at its next check.
    """
    stopped = (
        Generation.objects.filter(pk=generation.pk)
        .exclude(state__in=Generation.TERMINAL_STATES)
        .update(
            state=Generation.State.CANCELLED,
            finished_at=timezone.now(),
            lease_expires_at=None,
            next_attempt_at=None,
        )
    )
    if not stopped:
        return False
    generation.refresh_from_db()
    request = submitted_request(generation)
    if request is not None:
        try:
            with client_for(generation, generation.attempts, ClientPolicy.for_web_request()) as client:
                fal_queue(generation, client).cancel(request)
        except StepError as error:
            # Cancelled here all the same: a result that still arrives is never stored.
            logger.warning("fal cancel failed", extra={"generation": generation.pk, "error_code": error.code})
    transaction.on_commit(lambda: campaign_run_finished(generation.campaign_id))
    return True


def webhook_url() -> str | None:
    """Where fal should POST when a request finishes; None (poll only) unless a public base URL is set."""
    base = settings.PIXELMILL_FAL_WEBHOOK_BASE_URL.rstrip("/")
    return f"{base}{reverse('fal-webhook', args=[services.fal_webhook_token()])}" if base else None
