"""Recipe steps that run at an AI provider, with a content-addressed cache so nobody pays twice."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image
from redis import Redis

from dashboard.storage import read_bytes
from jobs.cpu_gate import cpu_released
from jobs.errors import BudgetCapReachedError, CreditsExhaustedError, DeferredError, PermanentError, StepError
from jobs.imaging import decode_image, encode_intermediate
from jobs.operations import Operation, carry_hints
from jobs.providers.adapters import RemoteResult, adapter_for
from jobs.providers.client import ClientPolicy, ProviderClient
from jobs.recipe_steps import RemoteStep

logger = logging.getLogger("pixelmill.remote")


def upload_bytes(image: Image.Image) -> tuple[bytes, str]:
    """What we send: lossless PNG when there is transparency, else a high-quality JPEG (a fifth the size).

    Both encodings are deterministic, so the same pixels give the same cache key.
    """
    if image.mode in ("RGBA", "LA"):
        return encode_intermediate(image), "image/png"
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=95, subsampling=0)
    return buffer.getvalue(), "image/jpeg"


def cache_key(input_sha256: str, operation: str, params: Mapping[str, object], provider: str) -> str:
    material = json.dumps(
        {"input": input_sha256, "operation": operation, "params": params, "provider": provider},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


class StepCache:
    """Results of remote steps in storage, indexed by `StepResult` rows."""

    def get(self, key: str) -> tuple[bytes, Any] | None:
        from dashboard.models import StepResult

        row = StepResult.objects.filter(key=key).first()
        if row is None:
            return None
        assert row.file.name  # a row is only saved with its file
        try:
            return read_bytes(row.file.name), row
        except FileNotFoundError:
            row.delete()  # the file went away: pay again rather than fail
            return None

    def put(self, key: str, *, provider: str, operation: str, result: RemoteResult) -> None:
        from dashboard.models import StepResult

        if StepResult.objects.filter(key=key).exists():
            return
        name = default_storage.save(f"stepcache/{key[:2]}/{key}.png", ContentFile(result.data))
        _, created = StepResult.objects.get_or_create(
            key=key,
            defaults={
                "provider": provider,
                "operation": operation,
                "file": name,
                "byte_size": len(result.data),
                "request_id": result.request_id[:200],
                "meta": result.meta,
            },
        )
        if not created:
            default_storage.delete(name)  # another worker stored the same result first


def book_call(campaign_id: int, price: Decimal) -> None:
    """Book a paid call against the campaign's budget cap before making it; raises BudgetCapReachedError
    instead of paying past the cap."""
    from dashboard.models import Campaign

    if Campaign.book_remote_spend(campaign_id, price):
        return
    campaign = Campaign.objects.only("budget_cap", "remote_spent").get(pk=campaign_id)
    raise BudgetCapReachedError(
        f"The campaign's budget cap of {campaign.budget_cap:.2f} {settings.PIXELMILL_CURRENCY} is reached "
        f"({campaign.remote_spent:.2f} spent; the next call costs {price:.2f}). Raise the cap to go on."
    )


def refund_call(campaign_id: int, price: Decimal) -> None:
    """Give back a booking the provider did not charge for."""
    from dashboard.models import Campaign

    Campaign.refund_remote_spend(campaign_id, price)


class RemoteRunner:
    """Runs one attempt's remote steps: chooses the provider, consults the cache, records each call.

    A `RemoteStep`'s `apply` hands its image here. The runner looks the work up in the step cache by
    (input sha256, operation, canonical params, provider), and only on a miss calls the provider, then
    stores the result before anything else happens, so a later failure of the same attempt, a retry or a
    re-run reuses it. The same key is the call's Idempotency-Key: a call that timed out here but finished
    at the provider is answered from the provider's record when a retry or a later attempt repeats it.
    """

    def __init__(
        self,
        *,
        connection: Redis,
        campaign_id: int | None,
        log_context: Mapping[str, Any],
        cache: StepCache | None = None,
        policy: ClientPolicy | None = None,
    ) -> None:
        self.connection = connection
        self.campaign_id = campaign_id
        self.log_context = dict(log_context)
        self.cache = cache or StepCache()
        self.policy = policy
        self.clients: dict[str, ProviderClient] = {}
        self.prices: dict[str, Decimal] = {}
        self.calls: list[dict[str, Any]] = []

    def __enter__(self) -> RemoteRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for client in self.clients.values():
            client.close()

    def client(self, slug: str) -> ProviderClient:
        if slug not in self.clients:
            from dashboard.models import Provider

            provider = Provider.objects.filter(slug=slug, is_active=True).first()
            if provider is None:
                raise PermanentError(
                    f"The provider {slug!r} is not configured or is switched off.", code="bad_config"
                )
            self.prices[slug] = provider.price_per_call
            self.clients[slug] = ProviderClient(
                provider.config(),
                connection=self.connection,
                policy=self.policy or ClientPolicy.from_settings(),
                log_context=self.log_context,
            )
        return self.clients[slug]

    def __call__(self, step: Operation, image: Image.Image) -> Image.Image:
        assert isinstance(step, RemoteStep)
        data, content_type = upload_bytes(image)
        digest = hashlib.sha256(data).hexdigest()
        params = step.params()
        providers = [step.provider, *([step.fallback] if step.fallback else [])]
        keys = {slug: cache_key(digest, step.name, params, slug) for slug in providers}

        for slug in providers:
            cached = self.cache.get(keys[slug])
            if cached is not None:
                result_bytes, row = cached
                self.calls.append(
                    {
                        "step": step.name,
                        "provider": slug,
                        "request_id": row.request_id,
                        "cached": True,
                        **row.meta,
                    }
                )
                return self._decode(result_bytes, image)

        for index, slug in enumerate(providers):
            client = self.client(slug)
            has_fallback = index + 1 < len(providers)
            if has_fallback and client.circuit_open_for():
                continue
            self._check_not_paused()
            price = self._book(slug)
            try:
                with cpu_released():  # only waiting: another thread of this worker may render meanwhile
                    result = adapter_for(client).run_chain(
                        step.operations, data, content_type, idempotency_key=keys[slug]
                    )
            except StepError as error:
                # An error answer is not billed; a timeout may have been (the work can finish unseen).
                if error.code != "timeout":
                    self._refund(price)
                if isinstance(error, DeferredError) and error.code == "circuit_open" and has_fallback:
                    continue
                raise
            if result.replayed:
                # The provider's record of a try that timed out here, kept booked then: paid once.
                self._refund(price)
            self.cache.put(keys[slug], provider=slug, operation=step.name, result=result)
            self.calls.append(
                {
                    "step": step.name,
                    "provider": slug,
                    "request_id": result.request_id,
                    "cached": False,
                    **result.meta,
                }
            )
            return self._decode(result.data, image)
        raise AssertionError("unreachable: the last provider either answers or raises")

    def _check_not_paused(self) -> None:
        from dashboard.models import Campaign

        reason = (
            Campaign.objects.filter(pk=self.campaign_id)
            .values_list("remote_paused_reason", flat=True)
            .first()
            if self.campaign_id
            else None
        )
        if reason:
            raise CreditsExhaustedError(reason)

    def _book(self, slug: str) -> Decimal:
        price = self.prices.get(slug, Decimal(0))
        if self.campaign_id is not None:
            book_call(self.campaign_id, price)
        return price

    def _refund(self, price: Decimal) -> None:
        if self.campaign_id is not None:
            refund_call(self.campaign_id, price)

    @staticmethod
    def _decode(data: bytes, source: Image.Image) -> Image.Image:
        try:
            result = decode_image(data, max_pixels=settings.PIXELMILL_MAX_PIXELS)
        except PermanentError as error:
            raise PermanentError(
                f"The provider's result is not a usable image: {error.message}", code="bad_answer"
            ) from error
        return carry_hints(source, result)
