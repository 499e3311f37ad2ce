"""fal's queue: requests wait, run and complete on the clock, then a webhook signed with our own key."""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from simulator.calls import Refusal
from simulator.config import SimulatorConfig
from simulator.fal_images import render_fal_image
from simulator.files import FileStore

logger = logging.getLogger(__name__)

FAL_WEBHOOK_USER_ID = "sim-user"
# fal retries a webhook that was not accepted: after these pauses, in seconds.
WEBHOOK_PAUSES = (0.0, 0.5, 1.0, 2.0)


@dataclass
class FalRequest:
    """One queued fal generation; its status follows from the clock and whether its images exist."""

    request_id: str
    app_id: str
    base: str
    prompt: str
    seed: int
    size: tuple[int, int]
    num_images: int
    webhook: str | None
    submitted: float  # time.monotonic()
    starts: float  # leaves the queue
    due: float  # finishes running
    cancelled: bool = False
    result: dict[str, Any] | None = None
    inference_time: float | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/fal/{self.app_id}/requests/{self.request_id}"

    def status(self, now: float) -> str:
        if self.cancelled:
            return "CANCELLED"
        if self.result is not None:
            return "COMPLETED"
        return "IN_PROGRESS" if now >= self.starts else "IN_QUEUE"


class FalQueue:
    """Submitted requests, a thread that completes each when it is due, and the webhooks that follow.

    `record` and `next_seq` write the simulator's request log: every webhook attempt is an entry of kind
    "webhook". `kept` bounds how many requests are remembered, oldest forgotten first.
    """

    def __init__(
        self,
        files: FileStore,
        record: Callable[[dict[str, Any]], None],
        next_seq: Callable[[], int],
        kept: int,
    ) -> None:
        self.kept = kept
        self._files = files
        self._record = record
        self._next_seq = next_seq
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._requests: OrderedDict[str, FalRequest] = OrderedDict()
        self._due: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        # fal signs webhooks with a key only this simulator holds; receivers check it against our JWKS.
        self._signing_key = Ed25519PrivateKey.generate()

    def start(self) -> None:
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="simulator-fal")
        self._thread = threading.Thread(target=self._run, name="simulator-fal-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop completing requests; webhooks waiting to be retried give up."""
        self._stopping.set()
        with self._wakeup:
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit(
        self,
        base: str,
        app_id: str,
        prompt: str,
        seed: int,
        size: tuple[int, int],
        num_images: int,
        webhook: str | None,
        settings: SimulatorConfig,
    ) -> tuple[FalRequest, int]:
        """The queued request, and how many requests were waiting in the queue before it."""
        now = time.monotonic()
        with self._wakeup:
            position = sum(1 for other in self._requests.values() if other.status(now) == "IN_QUEUE")
            starts = now + settings.fal_queue_seconds
            request = FalRequest(
                request_id=str(uuid.uuid4()),
                app_id=app_id,
                base=base,
                prompt=prompt,
                seed=seed,
                size=size,
                num_images=num_images,
                webhook=webhook,
                submitted=now,
                starts=starts,
                due=starts + settings.fal_run_seconds,
            )
            self._requests[request.request_id] = request
            while len(self._requests) > self.kept:
                self._requests.popitem(last=False)
            heapq.heappush(self._due, (request.due, next(self._order), request.request_id))
            self._wakeup.notify_all()
        return request, position

    def lookup(self, app_id: str, request_id: str) -> tuple[FalRequest, str, int]:
        """The request, its status now, and how many requests submitted before it are still queued."""
        now = time.monotonic()
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or request.app_id != app_id:
                raise Refusal(404, "Request not found", "not_found", outcome="not_found")
            status = request.status(now)
            ahead = sum(
                1
                for other in self._requests.values()
                if other.submitted < request.submitted and other.status(now) == "IN_QUEUE"
            )
        return request, status, ahead

    def cancel(self, app_id: str, request_id: str) -> bool:
        """True when the request is (now) cancelled; False when it had already completed."""
        with self._lock:
            request = self._requests.get(request_id)
            if request is None or request.app_id != app_id:
                raise Refusal(404, "Request not found", "not_found", outcome="not_found")
            if request.result is not None:
                return False
            request.cancelled = True
            return True

    def jwks(self) -> dict[str, Any]:
        """The public half of the webhook signing key, as fal publishes its keys."""
        raw = self._signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA", "kid": "simulator"}
            ]
        }

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    self._wakeup.wait(self._due[0][0] - now if self._due else None)
                if self._stopping.is_set():
                    return
                _, _, request_id = heapq.heappop(self._due)
                request = self._requests.get(request_id)
            if request is not None and self._pool is not None:
                try:
                    self._pool.submit(self._complete, request)
                except RuntimeError:
                    return  # the pool was shut down: we are stopping

    def _complete(self, request: FalRequest) -> None:
        try:
            with self._lock:
                cancelled = request.cancelled
            result = None if cancelled else self._generate(request)
            with self._lock:
                if result is not None and not request.cancelled:
                    request.result = result
                    request.inference_time = result["timings"]["inference"]
                else:
                    result = None
            if request.webhook:
                if result is not None:
                    message: dict[str, Any] = {"status": "OK", "payload": result}
                else:
                    message = {"status": "ERROR", "error": "Request was cancelled", "payload": None}
                body = json.dumps(
                    {"request_id": request.request_id, "gateway_request_id": request.request_id, **message}
                )
                threading.Thread(
                    target=self._deliver_webhook,
                    args=(request.webhook, request.request_id, body.encode()),
                    name="simulator-webhook",
                    daemon=True,
                ).start()
        except Exception:
            logger.exception("The provider simulator failed to complete fal request %s", request.request_id)

    def _generate(self, request: FalRequest) -> dict[str, Any]:
        began = time.monotonic()
        images = []
        for index in range(request.num_images):
            data = render_fal_image(request.prompt, request.seed, index, request.size)
            url = self._files.store(request.base, data, "jpg")
            width, height = request.size
            images.append({"url": url, "width": width, "height": height, "content_type": "image/jpeg"})
        inference = round(request.due - request.starts + time.monotonic() - began, 4)
        return {
            "images": images,
            "seed": request.seed,
            "prompt": request.prompt,
            "has_nsfw_concepts": [False] * request.num_images,
            "timings": {"inference": inference},
        }

    def _deliver_webhook(self, url: str, request_id: str, body: bytes) -> None:
        """POST a signed webhook, retrying a few times as fal does; every attempt is logged as kind "webhook"."""
        for attempt, pause in enumerate(WEBHOOK_PAUSES, start=1):
            if pause and self._stopping.wait(pause):
                return
            timestamp = str(int(time.time()))
            digest = hashlib.sha256(body).hexdigest()
            signed = "\n".join([request_id, FAL_WEBHOOK_USER_ID, timestamp, digest]).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Fal-Webhook-Request-Id": request_id,
                "X-Fal-Webhook-User-Id": FAL_WEBHOOK_USER_ID,
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": self._signing_key.sign(signed).hex(),
            }
            started = time.time()
            status: int | None = None
            try:
                with httpx.Client(timeout=5.0, trust_env=False) as client:
                    status = client.post(url, content=body, headers=headers).status_code
                outcome = "ok" if 200 <= status < 300 else f"http_{status}"
            except httpx.HTTPError as error:
                outcome = f"failed: {type(error).__name__}"
            self._record(
                {
                    "seq": self._next_seq(),
                    "kind": "webhook",
                    "provider": "fal",
                    "endpoint": "webhook",
                    "method": "POST",
                    "path": url,
                    "started": started,
                    "ended": time.time(),
                    "status": status,
                    "outcome": outcome,
                    "retry_after": None,
                    "retry_deadline": None,
                    "input_sha256": None,
                    "request_id": request_id,
                    "attempt": attempt,
                }
            )
            if outcome == "ok":
                return
