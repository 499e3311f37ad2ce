"""The provider simulator speaks five wire formats over a real socket, injects the faults it is asked for,
enforces real limits, and logs what a benchmark needs to prove about our client."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from PIL import Image

from jobs.providers.error_mapping import parse_retry_after, provider_reason
from simulator import (
    DEFAULT_KEY,
    PRESETS,
    ProviderSimulator,
    SimulatorConfig,
    max_in_flight,
    requests_before_deadline,
)
from tests.jobs.images import photo, png, product_on_white
from tests.polling import wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
PRODUCT = png(product_on_white(200, 150))
SMALL_PRODUCT = png(product_on_white(64, 48))
FAL = {"Authorization": f"Key {DEFAULT_KEY}"}


@pytest.fixture
def sim():
    with ProviderSimulator(SimulatorConfig(fal_queue_seconds=0.05, fal_run_seconds=0.05)) as simulator:
        yield simulator


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as http:
        yield http


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def remove_bg(
    client: httpx.Client, sim: ProviderSimulator, image: bytes = SMALL_PRODUCT, **form
) -> httpx.Response:
    return client.post(
        sim.url("removebg") + "/v1.0/removebg",
        headers={"X-Api-Key": DEFAULT_KEY},
        files={"image_file": ("product.png", image, "image/png")},
        data=form,
    )


def pixelpanda(client: httpx.Client, sim: ProviderSimulator, path: str, **payload) -> httpx.Response:
    return client.post(
        sim.url("pixelpanda") + path, headers={"Authorization": f"Bearer {DEFAULT_KEY}"}, json=payload
    )


def as_base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def api_entries(sim: ProviderSimulator) -> list[dict]:
    return sim.log(kind="api")


# --- the five formats ------------------------------------------------------------------------------------------


def test_pixelpanda_removes_the_background_into_a_downloadable_transparent_png(sim, client):
    for path in ("/remove-background", "/api/v1/remove-background", "/api/v2/remove-background"):
        response = pixelpanda(client, sim, path, image_base64=as_base64(PRODUCT))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success" and body["request_id"].startswith("pp_")
        assert isinstance(body["execution_time_ms"], int)
        # Like a signed CDN URL: no key needed to fetch the result.
        result = opened(httpx.get(body["processed_url"]).content)
        assert result.format == "PNG" and result.mode == "RGBA" and result.size == (200, 150)
        assert result.getpixel((0, 0))[3] == 0 and result.getpixel((199, 149))[3] == 0
        assert result.getpixel((100, 85))[3] == 255  # the bottle
    entry = api_entries(sim)[-1]
    assert entry["input_sha256"] == hashlib.sha256(PRODUCT).hexdigest()
    assert entry["request_id"] == response.json()["request_id"]


def test_pixelpanda_upscale_doubles_and_batch_applies_its_steps_in_order(sim, client):
    upscaled = pixelpanda(client, sim, "/upscale", image_base64=as_base64(PRODUCT), scale_factor=2)
    assert opened(client.get(upscaled.json()["processed_url"]).content).size == (400, 300)

    steps = [{"operation": "remove-background"}, {"operation": "upscale", "scale_factor": 2}]
    batch = pixelpanda(client, sim, "/batch", image_base64=as_base64(PRODUCT), operations=steps)
    result = opened(client.get(batch.json()["processed_url"]).content)
    assert result.mode == "RGBA" and result.size == (400, 300) and result.getpixel((2, 2))[3] == 0

    # image_url may name one of the simulator's own files, and nothing else.
    again = pixelpanda(client, sim, "/enhance", image_url=upscaled.json()["processed_url"])
    assert opened(client.get(again.json()["processed_url"]).content).size == (400, 300)
    foreign = pixelpanda(client, sim, "/enhance", image_url="http://example.com/files/a.png")
    assert foreign.status_code == 400 and foreign.json()["status"] == "error"
    bad_factor = pixelpanda(client, sim, "/upscale", image_base64=as_base64(PRODUCT), scale_factor=3)
    assert bad_factor.status_code == 400 and "scale_factor" in provider_reason(bad_factor)


def test_removebg_answers_image_bytes_with_its_headers(sim, client):
    response = remove_bg(client, sim, PRODUCT)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    result = opened(response.content)
    assert result.mode == "RGBA" and result.size == (200, 150) and result.getpixel((0, 0))[3] == 0
    assert response.headers["X-Credits-Charged"] == "1" and response.headers["X-Type"] == "product"
    assert (response.headers["X-Width"], response.headers["X-Height"]) == ("200", "150")
    assert all(
        name in response.headers
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    )

    filled = remove_bg(client, sim, PRODUCT, format="jpg", bg_color="ff0000")
    red = opened(filled.content)
    assert red.format == "JPEG" and red.getpixel((0, 0))[0] > 240 and red.getpixel((0, 0))[1] < 20

    cropped = remove_bg(client, sim, PRODUCT, crop="true")
    size = opened(cropped.content).size
    assert size[0] < 100 and size[1] < 150
    assert (cropped.headers["X-Width"], cropped.headers["X-Height"]) == (str(size[0]), str(size[1]))


def test_photoroom_segments_and_reports_an_uncertainty_score(sim, client):
    response = client.post(
        sim.url("photoroom") + "/v1/segment",
        headers={"x-api-key": DEFAULT_KEY},
        files={"image_file": ("product.png", PRODUCT, "image/png")},
        data={"format": "webp"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert opened(response.content).size == (200, 150)
    # The anti-aliased rim of the bottle is semi-transparent: a small, non-zero share.
    assert 0 < float(response.headers["x-uncertainty-score"]) < 0.2


def test_rembg_needs_no_key_returns_the_mask_on_request_and_refuses_unknown_models(sim, client):
    url = sim.url("rembg") + "/api/remove"
    files = {"file": ("product.png", PRODUCT, "image/png")}
    cutout = client.post(url, files=files)
    assert cutout.status_code == 200 and opened(cutout.content).mode == "RGBA"
    mask = opened(client.post(url, files=files, data={"om": "true", "ppm": "true"}).content)
    assert mask.mode == "L" and set(mask.getdata()) <= {0, 255}
    unknown = client.post(url, files=files, data={"model": "no-such-model"})
    assert unknown.status_code == 400 and "no-such-model" in unknown.json()["detail"]


def test_busy_backgrounds_are_refused_in_each_providers_own_400(sim, client):
    busy = png(photo(160, 120))
    removebg = remove_bg(client, sim, busy)
    assert removebg.status_code == 400
    assert removebg.json()["errors"][0]["code"] == "unknown_foreground"
    assert provider_reason(removebg).startswith("Could not identify foreground in image.")
    panda = pixelpanda(client, sim, "/remove-background", image_base64=as_base64(busy))
    assert panda.status_code == 400 and "plain" in panda.json()["error"]
    assert [entry["outcome"] for entry in api_entries(sim)] == ["bad_request", "bad_request"]


def submit_fal(client, sim, **payload) -> dict:
    response = client.post(sim.url("fal") + "/fal-ai/flux/schnell", headers=FAL, json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_fal(client, submitted: dict) -> list[dict]:
    """Every status the request showed while polled, up to COMPLETED or CANCELLED."""
    statuses = []

    def finished() -> bool:
        status = client.get(submitted["status_url"], headers=FAL)
        statuses.append({"code": status.status_code, **status.json()})
        return statuses[-1]["status"] in ("COMPLETED", "CANCELLED")

    wait_until(finished, timeout=5, interval=0.01, message=lambda: f"never completed: {statuses[-1]}")
    return statuses


def test_fal_queue_moves_from_in_queue_to_completed_with_deterministic_images(sim, client):
    submitted = submit_fal(client, sim, prompt="a blue bottle on sand", seed=7, image_size="landscape_16_9")
    app_url = sim.url("fal") + "/fal-ai/flux/requests/" + submitted["request_id"]
    assert submitted["response_url"] == app_url and submitted["status_url"] == app_url + "/status"
    assert submitted["cancel_url"] == app_url + "/cancel" and submitted["queue_position"] == 0
    early = client.get(submitted["response_url"], headers=FAL)
    assert early.status_code == 400 and early.json()["detail"] == "Request is still in progress"

    statuses = wait_for_fal(client, submitted)
    assert statuses[0] == {"code": 202, "status": "IN_QUEUE", "queue_position": 0, "response_url": app_url}
    assert any(s["status"] == "IN_PROGRESS" and s["code"] == 202 for s in statuses)
    assert statuses[-1]["code"] == 200 and statuses[-1]["metrics"]["inference_time"] > 0

    result = client.get(submitted["response_url"], headers=FAL).json()
    assert result["seed"] == 7 and result["prompt"] == "a blue bottle on sand"
    assert result["has_nsfw_concepts"] == [False]
    image = result["images"][0]
    first = client.get(image["url"]).content
    assert opened(first).size == (1024, 576) == (image["width"], image["height"])

    custom = {"width": 96, "height": 64}
    again = submit_fal(client, sim, prompt="a blue bottle on sand", seed=7, image_size=custom, num_images=2)
    other = submit_fal(client, sim, prompt="a blue bottle on sand", seed=8, image_size=custom)
    wait_for_fal(client, again), wait_for_fal(client, other)
    images = client.get(again["response_url"], headers=FAL).json()["images"]
    same, second = (client.get(i["url"]).content for i in images)
    different = client.get(client.get(other["response_url"], headers=FAL).json()["images"][0]["url"]).content
    assert opened(same).size == (96, 64) and len(images) == 2
    again_bytes = submit_fal(client, sim, prompt="a blue bottle on sand", seed=7, image_size=custom)
    wait_for_fal(client, again_bytes)
    repeat = client.get(
        client.get(again_bytes["response_url"], headers=FAL).json()["images"][0]["url"]
    ).content
    assert repeat == same and different != same and second != same


def test_fal_cancels_queued_requests_but_not_completed_ones(sim, client):
    sim.configure(provider="fal", fal_queue_seconds=5)
    queued = submit_fal(client, sim, prompt="a lamp", image_size="square")
    assert client.put(queued["cancel_url"], headers=FAL).json() == {"status": "CANCELLATION_REQUESTED"}
    assert client.get(queued["status_url"], headers=FAL).json() == {"status": "CANCELLED"}
    assert client.get(queued["response_url"], headers=FAL).status_code == 400

    sim.configure(provider="fal", fal_queue_seconds=0.01)
    done = submit_fal(client, sim, prompt="a lamp", image_size={"width": 32, "height": 32})
    wait_for_fal(client, done)
    refused = client.put(done["cancel_url"], headers=FAL)
    assert refused.status_code == 400 and refused.json() == {"status": "ALREADY_COMPLETED"}
    invalid = client.post(sim.url("fal") + "/fal-ai/flux/schnell", headers=FAL, json={"seed": 1})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "prompt"]


# --- auth -------------------------------------------------------------------------------------------------------


AUTH_CASES = {
    "pixelpanda": ("/remove-background", "Authorization", "Bearer {}", 401, lambda b: b["status"] == "error"),
    "removebg": ("/v1.0/removebg", "X-Api-Key", "{}", 403, lambda b: b["errors"][0]["code"] == "auth_failed"),
    "photoroom": ("/v1/segment", "x-api-key", "{}", 401, lambda b: b["status_code"] == 401 and b["type"]),
    "rembg": ("/api/remove", "Authorization", "Bearer {}", 401, lambda b: b["detail"]),
    "fal": ("/fal-ai/flux/schnell", "Authorization", "Key {}", 401, lambda b: b["detail"]),
}


@pytest.mark.parametrize("provider", sorted(AUTH_CASES))
def test_each_provider_checks_its_own_key_header_and_answers_in_its_own_format(sim, client, provider):
    path, header, shape, status, body_is_own = AUTH_CASES[provider]
    if provider == "rembg":
        # Self-hosted rembg has no key unless one is configured for it.
        sim.configure(provider="rembg", key="rembg-secret")
    url = sim.url(provider) + path
    missing = client.post(url, json={})
    wrong = client.post(url, json={}, headers={header: shape.format("wrong")})
    for response in (missing, wrong):
        assert response.status_code == status and body_is_own(response.json())
        assert provider_reason(response) != f"HTTP {status}"
    assert {entry["outcome"] for entry in api_entries(sim)} == {"unauthorized"}


def test_rembg_answers_without_a_key_by_default_even_when_other_providers_are_overridden(client):
    config = SimulatorConfig(for_provider={"removebg": {"p503": 1.0}})
    with ProviderSimulator(config) as sim:
        response = client.post(sim.url("rembg") + "/api/remove", files={"file": ("p.png", SMALL_PRODUCT)})
        assert response.status_code == 200
        assert remove_bg(client, sim).status_code == 503


# --- faults -----------------------------------------------------------------------------------------------------


def test_fail_next_forces_outcomes_in_order_then_behaves_normally(sim, client):
    sim.configure(provider="removebg", fail_next=["429", "503", "500", "400", "402", "ok"])
    statuses = [remove_bg(client, sim).status_code for _ in range(7)]
    assert statuses == [429, 503, 500, 400, 402, 200, 200]
    outcomes = [entry["outcome"] for entry in api_entries(sim)]
    assert outcomes == ["injected_429", "http_503", "http_500", "injected_400", "injected_402", "ok", "ok"]
    # Each forced answer is still remove.bg's own error body.
    sim.configure(provider="removebg", fail_next=["402"])
    assert remove_bg(client, sim).json() == {
        "errors": [{"title": "Insufficient credits", "code": "insufficient_credits"}]
    }


def test_injected_429s_give_retry_after_both_as_seconds_and_as_an_http_date(sim, client):
    sim.configure(provider="removebg", p429=1.0, retry_after_seconds=2)
    responses = [remove_bg(client, sim) for _ in range(10)]
    assert {response.status_code for response in responses} == {429}
    values = [response.headers["Retry-After"] for response in responses]
    seconds = [value for value in values if value.isdigit()]
    dates = [value for value in values if not value.isdigit()]
    assert seconds == ["2"] * 5 and len(dates) == 5
    for value in dates:
        assert parsedate_to_datetime(value).tzinfo is not None
        assert 1 <= parse_retry_after(value) <= 3
    assert all("X-RateLimit-Reset" in response.headers for response in responses)
    for entry, value in zip(api_entries(sim), values, strict=True):
        assert entry["outcome"] == "injected_429"
        assert entry["retry_deadline"] == pytest.approx(entry["ended"] + entry["retry_after"])
        if value.isdigit():
            assert entry["retry_after"] == 2.0
        else:
            # The date names the first whole second at or after now + 2 s; the log keeps that exact deadline.
            assert entry["retry_deadline"] == parsedate_to_datetime(value).timestamp()
            assert 2 <= entry["retry_after"] < 3


def test_a_reset_fault_is_a_transport_error_and_the_next_call_works(sim, client):
    sim.configure(fail_next=["reset"])
    with pytest.raises(httpx.TransportError) as error:
        remove_bg(client, sim)
    assert not isinstance(error.value, httpx.TimeoutException)
    assert remove_bg(client, sim).status_code == 200
    assert [(e["status"], e["outcome"]) for e in api_entries(sim)] == [(None, "reset"), (200, "ok")]


def test_a_timeout_fault_hangs_until_the_client_gives_up(sim):
    sim.configure(fail_next=["timeout"], hang_seconds=0.6)
    with httpx.Client(timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        remove_bg(impatient, sim)
    entry = wait_until(lambda: api_entries(sim), timeout=5, message="the hung call was never logged")[0]
    assert entry["status"] is None and entry["outcome"] == "timeout"
    assert entry["ended"] - entry["started"] >= 0.6


def test_random_faults_follow_the_seed(client):
    """The same seed gives the same sequence of outcomes; the chaos preset is what it says."""

    def outcomes(seed: int) -> list[int]:
        config = SimulatorConfig(seed=seed, p503=0.5, p500=0.2)
        with ProviderSimulator(config) as sim:
            return [
                client.post(sim.url("fal") + "/fal-ai/x", headers=FAL, json={}).status_code for _ in range(20)
            ]

    first = outcomes(3)
    assert first == outcomes(3) and {503, 500} <= set(first)
    chaos = SimulatorConfig(**PRESETS["chaos"])
    assert (chaos.p429, chaos.p503, chaos.p_reset, chaos.p_timeout, chaos.p400) == (
        0.2,
        0.1,
        0.05,
        0.02,
        0.01,
    )


# --- limits and credits -----------------------------------------------------------------------------------------


def test_the_token_bucket_answers_429_past_its_burst(sim, client):
    sim.configure(provider="removebg", rate_per_second=0.5, burst=2)
    responses = [remove_bg(client, sim) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 429]
    # One token every 2 s: that is how long the bucket asks us to wait.
    assert responses[2].headers["Retry-After"] == "2"
    assert responses[2].headers["X-RateLimit-Limit"] == "2"
    assert responses[2].headers["X-RateLimit-Remaining"] == "0"
    assert int(responses[2].headers["X-RateLimit-Reset"]) >= int(time.time()) + 1
    assert api_entries(sim)[2]["outcome"] == "rate_limited"
    # Other providers have buckets of their own.
    assert (
        client.post(sim.url("rembg") + "/api/remove", files={"file": ("p.png", SMALL_PRODUCT)}).status_code
        == 200
    )


def test_the_token_bucket_counts_a_call_when_it_arrives_not_once_its_body_is_read(sim):
    """A provider's gateway counts a call as it arrives; the simulator's own time reading a body (a slow
    upload here, its threads waiting for a busy CPU in a benchmark) must not move it next to the call after."""
    sim.configure(provider="rembg", rate_per_second=5, burst=1)  # one call per 200 ms
    form = httpx.Request("POST", sim.url("rembg") + "/api/remove", files={"file": ("p.png", SMALL_PRODUCT)})
    body = form.read()

    def slow_upload():
        time.sleep(0.3)
        yield body

    with httpx.Client(timeout=5) as http:
        slow = http.post(
            form.url, content=slow_upload(), headers={"Content-Type": form.headers["Content-Type"]}
        )
        # Sent as soon as the first is answered: 300 ms after the first arrived, a few after its body did.
        right_after = http.post(form.url, files={"file": ("p.png", SMALL_PRODUCT)})

    assert [slow.status_code, right_after.status_code] == [200, 200]


def test_the_concurrency_limit_answers_429_past_the_limit(sim):
    sim.configure(provider="rembg", concurrency=2, latency_ms=400)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(timeout=10) as own:
            barrier.wait()
            response = own.post(sim.url("rembg") + "/api/remove", files={"file": ("p.png", SMALL_PRODUCT)})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 429, 429]
    entries = api_entries(sim)
    assert {e["outcome"] for e in entries if e["status"] == 429} == {"concurrency_limited"}
    assert all(e["retry_after"] == 1.0 for e in entries if e["status"] == 429)
    admitted = [e for e in entries if e["status"] == 200]
    assert max_in_flight(admitted, "rembg") == 2 and max_in_flight(entries) == 4
    # Latency applies to refusals too, so all four were open at once.
    assert all(e["ended"] - e["started"] >= 0.4 for e in entries)


def test_credits_run_out_into_the_providers_402_and_failed_calls_cost_nothing(sim, client):
    sim.configure(provider="removebg", credits=2, fail_next=["503"])
    statuses = [remove_bg(client, sim).status_code for _ in range(4)]
    assert statuses == [503, 200, 200, 402]
    body = remove_bg(client, sim).json()
    assert body == {"errors": [{"title": "Insufficient credits", "code": "insufficient_credits"}]}
    assert api_entries(sim)[-1]["outcome"] == "credits"
    assert sim.describe()["state"]["providers"]["removebg"]["credits_left"] == 0
    sim.reset()
    assert remove_bg(client, sim).status_code == 503  # reset re-arms fail_next and refills the balance
    assert remove_bg(client, sim).status_code == 200


def remove_bg_once(client: httpx.Client, sim: ProviderSimulator, key: str, image: bytes = SMALL_PRODUCT):
    return client.post(
        sim.url("removebg") + "/v1.0/removebg",
        headers={"X-Api-Key": DEFAULT_KEY, "Idempotency-Key": key},
        files={"image_file": ("product.png", image, "image/png")},
    )


def test_a_repeated_idempotency_key_gets_the_kept_answer_without_a_second_charge(sim, client):
    sim.configure(provider="removebg", credits=5, fail_next=["503"])
    responses = [remove_bg_once(client, sim, "cut-1") for _ in range(3)]
    assert [r.status_code for r in responses] == [503, 200, 200], "a failure is not kept: the retry works"
    assert responses[2].content == responses[1].content
    assert responses[2].headers["Idempotent-Replayed"] == "true"
    assert [e["outcome"] for e in api_entries(sim)] == ["http_503", "ok", "replayed"]
    assert sim.describe()["state"]["providers"]["removebg"]["credits_left"] == 4, "charged once"

    other_image = remove_bg_once(client, sim, "cut-1", image=PRODUCT)
    assert other_image.status_code == 422, "a key is never answered with another image's result"
    assert remove_bg_once(client, sim, "cut-2", image=PRODUCT).status_code == 200
    assert sim.describe()["state"]["providers"]["removebg"]["credits_left"] == 3


def test_a_repeat_sent_while_the_first_is_still_at_work_waits_for_its_answer(sim, client):
    sim.configure(provider="removebg", credits=5, latency_ms=800)

    def impatient() -> None:
        with httpx.Client(timeout=0.2) as own, pytest.raises(httpx.TimeoutException):
            remove_bg_once(own, sim, "slow-1")

    first = threading.Thread(target=impatient)
    first.start()
    wait_until(lambda: sim.describe()["state"]["providers"]["removebg"]["in_flight"] == 1)
    repeat = remove_bg_once(client, sim, "slow-1")
    first.join()

    assert repeat.status_code == 200 and repeat.headers["Idempotent-Replayed"] == "true"
    assert sorted(e["outcome"] for e in api_entries(sim)) == ["ok", "replayed"]
    assert sim.describe()["state"]["providers"]["removebg"]["credits_left"] == 4, "charged once"


# --- what the log proves ----------------------------------------------------------------------------------------


def entry(
    provider: str, started: float, ended: float, status: int = 200, deadline: float | None = None
) -> dict:
    return {
        "kind": "api",
        "provider": provider,
        "started": started,
        "ended": ended,
        "status": status,
        "retry_deadline": deadline,
    }


def test_max_in_flight_counts_overlapping_provider_calls_only():
    entries = [
        entry("a", 0.0, 1.0),
        entry("a", 0.5, 1.5),
        entry("a", 0.8, 0.9),
        entry("a", 1.5, 2.0),  # starts as one ends: no overlap
        entry("b", 0.1, 1.0),
        {**entry("a", 0.1, 1.0), "kind": "download"},
    ]
    assert max_in_flight(entries, "a") == 3
    assert max_in_flight(entries) == 4
    assert max_in_flight([], "a") == 0


def test_requests_before_deadline_flags_only_calls_that_could_have_known():
    entries = [
        entry("a", 0.0, 1.0, status=429, deadline=3.0),
        entry("a", 0.5, 1.2),  # in flight when the 429 was sent: could not know
        entry("a", 1.05, 1.1),  # sent within the grace after the 429: still on its way
        entry("a", 2.0, 2.5),  # ignored the Retry-After
        entry("a", 3.0, 3.5),  # at the deadline: fine
        entry("b", 2.0, 2.1),  # another provider: its own limits
    ]
    offending = requests_before_deadline(entries, grace_seconds=0.1)
    assert [(e["provider"], e["started"]) for e in offending] == [("a", 2.0)]
    assert [e["started"] for e in requests_before_deadline(entries)] == [1.05, 2.0]


# --- fal webhooks -----------------------------------------------------------------------------------------------


class WebhookReceiver(BaseHTTPRequestHandler):
    """Fails the first delivery with a 500, accepts the rest, remembers what arrived."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.deliveries.append((self.headers, body))  # type: ignore[attr-defined]
        self.send_response(500 if len(self.server.deliveries) == 1 else 200)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()
        if len(self.server.deliveries) > 1:  # type: ignore[attr-defined]
            self.server.accepted.set()  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:
        pass


def test_fal_webhook_arrives_signed_with_a_key_published_as_jwks(sim, client):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), WebhookReceiver)
    receiver.deliveries, receiver.accepted = [], threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        submitted = client.post(
            sim.url("fal") + "/fal-ai/flux/dev",
            params={"fal_webhook": hook},
            headers=FAL,
            json={"prompt": "a teapot", "seed": 1, "image_size": {"width": 64, "height": 64}},
        ).json()
        assert receiver.accepted.wait(5), "the retried webhook never arrived"
    finally:
        receiver.shutdown()
        receiver.server_close()

    headers, body = receiver.deliveries[-1]
    message = json.loads(body)
    assert message["request_id"] == message["gateway_request_id"] == submitted["request_id"]
    assert message["status"] == "OK"
    assert message["payload"] == client.get(submitted["response_url"], headers=FAL).json()

    jwks = client.get(sim.url("fal") + "/.well-known/jwks.json").json()
    x = jwks["keys"][0]["x"]
    public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    assert headers["X-Fal-Webhook-Request-Id"] == submitted["request_id"]
    assert abs(int(headers["X-Fal-Webhook-Timestamp"]) - time.time()) < 60
    signed = "\n".join(
        [
            headers["X-Fal-Webhook-Request-Id"],
            headers["X-Fal-Webhook-User-Id"],
            headers["X-Fal-Webhook-Timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    public_key.verify(bytes.fromhex(headers["X-Fal-Webhook-Signature"]), signed.encode())  # raises if forged

    attempts = [(e["status"], e["outcome"]) for e in sim.log(kind="webhook")]
    assert attempts == [(500, "http_500"), (200, "ok")]


# --- control over HTTP, the log file, the command ---------------------------------------------------------------


def test_config_log_and_reset_work_over_http(sim, client):
    control = sim.base_url + "/_sim"
    changed = client.post(control + "/config", json={"provider": "photoroom", "p503": 1.0, "latency_ms": 100})
    assert changed.status_code == 200
    assert changed.json()["config"]["for_provider"]["photoroom"] == {"p503": 1.0, "latency_ms": 100}
    began = time.monotonic()
    unavailable = client.post(
        sim.url("photoroom") + "/v1/segment",
        headers={"x-api-key": DEFAULT_KEY},
        files={"image_file": ("p.png", SMALL_PRODUCT)},
    )
    assert time.monotonic() - began >= 0.1
    assert unavailable.status_code == 503
    assert unavailable.json()["status_code"] == 503 and unavailable.json()["detail"]
    assert remove_bg(client, sim).status_code == 200  # the override is photoroom's alone

    refused = client.post(control + "/config", json={"p429": 3})
    assert refused.status_code == 400 and "p429" in refused.json()["detail"]
    assert client.post(control + "/config", json={"preset": "chaos"}).json()["config"]["p429"] == 0.2

    entries = client.get(control + "/log").json()["entries"]
    assert [e["kind"] for e in entries] == ["control", "api", "api", "control", "control"]
    assert client.get(control + "/log", params={"kind": "api"}).json()["entries"] == sim.log(kind="api")
    assert client.post(control + "/reset").json() == {"status": "reset"}
    # Only the reset itself, logged once it was answered, is left.
    assert [(e["kind"], e["endpoint"]) for e in sim.log()] == [("control", "reset")]


def test_the_log_is_also_appended_to_a_jsonl_file(tmp_path):
    path = tmp_path / "simulator-log.jsonl"
    with ProviderSimulator(SimulatorConfig(log_path=str(path))) as sim, httpx.Client() as http:
        remove_bg(http, sim)
        http.get(sim.base_url + "/files/none.png")
        logged = sim.log()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == logged and [e["kind"] for e in lines] == ["api", "download"]


def test_management_command_serves_until_sigterm(tmp_path):
    log = tmp_path / "log.jsonl"
    command = [
        sys.executable,
        "manage.py",
        "provider_simulator",
        "--port",
        "0",
        "--log",
        str(log),
        "--seed",
        "1",
    ]
    process = subprocess.Popen(
        command,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        first = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match, first + process.stderr.read()
        base = match.group(0)
        lines = [process.stdout.readline() for _ in range(5)]
        assert [line.split()[0] for line in lines] == ["pixelpanda", "removebg", "photoroom", "rembg", "fal"]
        health = httpx.get(base + "/_sim/health")
        assert health.status_code == 200 and health.json()["urls"]["fal"] == base + "/fal"
        removed = httpx.post(base + "/rembg/api/remove", files={"file": ("p.png", SMALL_PRODUCT)})
        assert removed.status_code == 200

        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.rstrip().endswith("Stopped.")
    assert [json.loads(line)["provider"] for line in log.read_text().splitlines()] == [None, "rembg"]
