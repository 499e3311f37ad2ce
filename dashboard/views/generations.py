"""Images generated from prompts: queue, cancel or requeue them, and the webhook fal calls when one is done."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.crypto import constant_time_compare
from django.utils.text import Truncator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from dashboard import services
from dashboard.access import visible_campaign
from dashboard.forms import GenerateForm
from dashboard.models import Campaign, Generation
from dashboard.views.campaigns import render_campaign
from dashboard.views.confirmation import Confirmation, ConfirmThenActView
from jobs.errors import StepError
from jobs.generation import cancel_generation
from jobs.providers.client import ClientPolicy, ProviderClient
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


class GenerationAction(ConfirmThenActView):
    """Confirm, then act on one generation of a campaign the user's team owns."""

    def load(self) -> None:
        self.generation = visible_generation(self.request, self.kwargs["pk"])

    def ask(self, verb: str, consequence: str) -> Confirmation:
        return Confirmation(
            title=f"{verb} generation",
            question=f"{verb} “{Truncator(self.generation.prompt).chars(80)}”?",
            consequence=consequence,
            button=f"Yes, {verb.lower()}",
            back_url=self.generation.campaign.get_absolute_url(),
            back_label="Back",  # "Cancel" would read as the action itself on the cancel page
        )


class GenerationCancel(GenerationAction):
    """Stop a generation here and at fal."""

    def confirmation(self) -> Confirmation:
        generation = self.generation
        at_fal = f"; {generation.provider} is asked to drop the request" if generation.request_id else ""
        return self.ask("Cancel", f"No images will be generated for this prompt{at_fal}.")

    def act(self) -> HttpResponse:
        prompt = self.generation.prompt[:60]
        if cancel_generation(self.generation):
            messages.success(self.request, f"Cancelled “{prompt}”.")
        else:
            messages.info(self.request, f"“{prompt}” had already finished; nothing to cancel.")
        return redirect(self.generation.campaign)


class GenerationRequeue(GenerationAction):
    """A failed or dead generation goes back on the queue."""

    def confirmation(self) -> Confirmation:
        generation = self.generation
        consequence = "The prompt goes back into the queue with a fresh set of attempts."
        if generation.state == Generation.State.DEAD and generation.request_id:
            consequence += " The request already paid for is checked again, not sent again."
        return self.ask("Requeue", consequence)

    def act(self) -> HttpResponse:
        prompt = self.generation.prompt[:60]
        if services.requeue_generations(Generation.objects.filter(pk=self.generation.pk)):
            messages.success(self.request, f"Requeued “{prompt}”.")
        else:
            messages.info(self.request, f"“{prompt}” is not failed; nothing to requeue.")
        return redirect(self.generation.campaign)


@csrf_exempt
@login_not_required
@require_POST
def fal_webhook(request: HttpRequest, token: str) -> HttpResponse:
    """fal says a request finished. Verified as fal documents it (ED25519 over request id, user id,
    timestamp and the body's SHA-256, keys from its JWKS); the work itself happens in a worker."""
    if not constant_time_compare(token, services.fal_webhook_token()):
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
            generation.provider.config(), connection=connection, policy=ClientPolicy.for_web_request()
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
