"""Images generated from prompts: queue, cancel or requeue them, and the webhook fal calls when one is done."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.forms import GenerateForm
from dashboard.models import Campaign, Generation
from dashboard.views.campaigns import render_campaign
from jobs.errors import StepError
from jobs.generation import cancel_generation, web_policy, webhook_token
from jobs.providers.client import ProviderClient
from jobs.providers.fal import DEFAULT_JWKS_URL, FalKeyring, FalWebhook, WebhookRejectedError
from jobs.queueing import get_process_queue


@require_POST
def campaign_generate(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = visible_campaign(request, pk)
    form = GenerateForm(request.POST, request.FILES)
    if not form.is_valid():
        # Shown again with the prompts as typed, so one bad line does not cost the whole list.
        messages.error(
            request, "Nothing was generated: some prompts need fixing (see “Generate from prompts” below)."
        )
        response = render_campaign(request, campaign, generate_form=form)
        response.status_code = 400
        return response
    count = services.queue_generations(campaign, form.cleaned_data["provider"], form.cleaned_data["specs"])
    messages.success(request, f"Generating images for {count} prompt{'s' if count != 1 else ''}.")
    return redirect(campaign)


def visible_generation(request: HttpRequest, pk: int) -> Generation:
    return get_object_or_404(
        Generation.objects.filter(campaign__in=Campaign.objects.visible_to(request.user)).select_related(
            "campaign", "provider"
        ),
        pk=pk,
    )


@require_http_methods(["GET", "POST"])
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET; on POST stop it here and at fal."""
    generation = visible_generation(request, pk)
    if request.method == "POST":
        if cancel_generation(generation):
            messages.success(request, f"Cancelled “{generation.prompt[:60]}”.")
        else:
            messages.info(request, f"“{generation.prompt[:60]}” had already finished; nothing to cancel.")
        return redirect(generation.campaign)
    return render(
        request,
        "dashboard/confirm_generation.html",
        {"campaign": generation.campaign, "generation": generation, "verb": "cancel", "action": request.path},
    )


@require_http_methods(["GET", "POST"])
def generation_requeue(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm on GET; on POST a failed or dead generation goes back on the queue."""
    generation = visible_generation(request, pk)
    if request.method == "POST":
        if services.requeue_generations(Generation.objects.filter(pk=generation.pk)):
            messages.success(request, f"Requeued “{generation.prompt[:60]}”.")
        else:
            messages.info(request, f"“{generation.prompt[:60]}” is not failed; nothing to requeue.")
        return redirect(generation.campaign)
    return render(
        request,
        "dashboard/confirm_generation.html",
        {
            "campaign": generation.campaign,
            "generation": generation,
            "verb": "requeue",
            "action": request.path,
        },
    )


@csrf_exempt
@login_not_required
@require_POST
def fal_webhook(request: HttpRequest, token: str) -> HttpResponse:
    """fal says a request finished. Verified as fal documents it (ED25519 over request id, user id,
    timestamp and the body's SHA-256, keys from its JWKS); the work itself happens in a worker."""
    if not constant_time_compare(token, webhook_token()):
        raise Http404("Not found")
    try:
        webhook = FalWebhook.from_headers(request.headers)
        webhook.check_timestamp()
    except WebhookRejectedError as error:
        return JsonResponse({"error": error.message}, status=error.status)
    generation = Generation.objects.select_related("provider").filter(request_id=webhook.request_id).first()
    if generation is None:
        return JsonResponse({"error": "unknown request"}, status=404)
    jwks_url = str(generation.provider.options.get("jwks_url") or DEFAULT_JWKS_URL)
    connection = get_process_queue().connection
    try:
        with ProviderClient(
            generation.provider.config(), connection=connection, policy=web_policy()
        ) as client:
            FalKeyring(client, jwks_url, connection).verify(webhook, request.body)
    except WebhookRejectedError as error:
        return JsonResponse({"error": error.message}, status=error.status)
    except StepError as error:
        # fal's keys are out of reach right now; fal delivers again later, and polling goes on meanwhile.
        return JsonResponse({"error": f"cannot verify now: {error.message}"}, status=503)
    if generation.state in Generation.TERMINAL_STATES:
        return JsonResponse({"status": "already finished"})
    services.expedite_generation(generation)
    return JsonResponse({"status": "accepted"})
