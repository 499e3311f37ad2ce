"""The provider simulator: five wire formats on one local HTTP server, limits and faults, a request log."""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from jobs.errors import PermanentError
from jobs.operations import OperationParamsError
from simulator.calls import Answer, Call, Refusal, json_answer
from simulator.config import PRESETS, PROVIDERS, SimulatorConfig
from simulator.connection import BodyError, Exchange, ThreadingServer
from simulator.fal_queue import FalQueue
from simulator.faults import Faults
from simulator.files import FileStore
from simulator.formats.base import Format, Route
from simulator.formats.fal import Fal
from simulator.formats.photoroom import Photoroom
from simulator.formats.pixelpanda import PixelPanda
from simulator.formats.rembg import Rembg
from simulator.formats.removebg import RemoveBg
from simulator.replays import ReplayKey, Replays
from simulator.request_log import RequestLog

logger = logging.getLogger(__name__)


class ProviderSimulator:
    """Five provider wire formats on one local HTTP server, with limits and faults on demand and a request log.

        sim = ProviderSimulator(SimulatorConfig(p429=0.2))
        base = sim.start()              # "http://127.0.0.1:<port>"; sim.url("removebg") is remove.bg's base URL
        sim.configure(provider="removebg", fail_next=["429", "ok"])
        ...
        entries = sim.log()
        sim.stop()

    or `with ProviderSimulator(config) as sim:`. Nothing is listening until `start()`.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or SimulatorConfig()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._log = RequestLog(self._config.log_limit)
        # The parts the wire formats use: stored files, limits and faults, fal's queue.
        self.files = FileStore(self._config.files_kept)
        self.replays = Replays(self._config.files_kept)
        self.faults = Faults(self._config)
        self.fal_queue = FalQueue(self.files, self._log.record, self._log.next_seq, self._config.files_kept)
        self._formats: dict[str, Format] = {
            fmt.name: fmt
            for fmt in (PixelPanda(self), RemoveBg(self), Photoroom(self), Rembg(self), Fal(self))
        }
        self.base_url: str | None = None

    # --- lifecycle ---

    def start(self) -> str:
        """Listen and serve on background threads; returns the base URL, e.g. "http://127.0.0.1:8700"."""
        if self._server is not None:
            return self.base_url  # type: ignore[return-value]
        self._stopping.clear()
        self._server = ThreadingServer((self._host, self._port), self._handle, self._track)
        host, port = self._server.server_address[:2]  # type: ignore[misc]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        self.base_url = f"http://{shown}:{port}"
        self._log.open_file(self._config.log_path)
        self.fal_queue.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="simulator", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; requests still hanging or sleeping are cut short, open connections closed."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        self.fal_queue.stop()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._log.open_file(None)
        self._server = None

    def __enter__(self) -> ProviderSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The simulator is not running.")
        return int(self._server.server_address[1])  # type: ignore[misc]

    def url(self, provider: str) -> str:
        """The base URL to configure for `provider`; our client appends the provider's own path to it."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if self.base_url is None:
            raise RuntimeError("The simulator is not running.")
        return f"{self.base_url}/{provider}"

    def urls(self) -> dict[str, str]:
        return {provider: self.url(provider) for provider in PROVIDERS}

    # --- behaviour ---

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def configure(
        self, provider: str | None = None, *, preset: str | None = None, **changes: Any
    ) -> SimulatorConfig:
        """Change settings while running: globally, or for one `provider`; `preset` applies first.

        Setting `credits` refills the balance, `fail_next` re-arms the queue, `rate_per_second` or `burst`
        refill the bucket and `seed` re-seeds the random faults. Raises ValueError naming what is wrong.
        """
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        changes = {**PRESETS.get(preset or "", {}), **changes}
        changed = set(changes)
        with self._lock:
            new = self._config.changed(provider, **changes)
            self._config = new
            self.faults.apply(new, provider, changed)
            if provider is None:
                self.files.kept = self.fal_queue.kept = self.replays.kept = new.files_kept
                if "log_limit" in changed:
                    self._log.resize(new.log_limit)
        if provider is None and "log_path" in changes and self._server is not None:
            self._log.open_file(new.log_path)
        return new

    def reset(self) -> None:
        """Clear the log, forget Idempotency-Key answers, and return the runtime state to what the config
        says: RNG, buckets, credits, fail_next.

        Stored files and fal requests stay: a client may still be fetching them.
        """
        with self._lock:
            self._log.clear()
            self.faults.reset(self._config)
            self.replays.clear()

    def log(self, kind: str | None = None) -> list[dict[str, Any]]:
        """A copy of the request log in arrival order; `kind` keeps only "api", "download", "control" or "webhook"."""
        return self._log.entries(kind)

    def describe(self) -> dict[str, Any]:
        """Config and live state (credits left, queued outcomes, tokens, calls in flight), as /_sim/config shows."""
        with self._lock:
            config = self._config
            state = self.faults.describe(config)
        urls = self.urls() if self.base_url is not None else {}
        return {"config": config.to_dict(), "state": state, "urls": urls}

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # --- requests ---

    def _handle(self, exchange: Exchange) -> None:
        call = Call(exchange, self._log.next_seq(), time.time())
        try:
            call.body = exchange.read_body()
        except BodyError as error:
            self._respond(call, json_answer(error.status, {"detail": error.message}, "bad_request"))
            return
        except OSError:
            exchange.hang_up()
            return
        try:
            self._route(call)
        except Exception:
            logger.exception("The provider simulator failed on %s %s", call.method, call.path)
            if not call.answered:
                self._respond(
                    call, json_answer(500, {"detail": "The simulator itself failed."}, "simulator_error")
                )

    def _route(self, call: Call) -> None:
        segments = [segment for segment in call.path.split("/") if segment]
        head = segments[0] if segments else ""
        if head == "_sim":
            call.kind, call.endpoint = "control", "/".join(segments[1:])
            self._respond(call, self._control(call, segments[1:]))
        elif head == "files":
            call.kind, call.endpoint = "download", "files"
            self._respond(call, self.files.download(call, segments[1:]))
        elif (
            head == "fal" and segments[1:] == [".well-known", "jwks.json"] and call.method in ("GET", "HEAD")
        ):
            call.kind, call.provider, call.endpoint = "download", "fal", "jwks"
            self._respond(call, json_answer(200, self.fal_queue.jwks(), "ok"))
        elif head in self._formats:
            fmt = self._formats[head]
            call.provider = fmt.name
            route = fmt.route(call.method, segments[1:])
            if route is None:
                call.endpoint = "/".join(segments[1:])
                self._respond(call, fmt.error(404, "Not Found", "not_found", "not_found"))
            else:
                call.endpoint = route.endpoint
                self._serve(call, fmt, route)
        else:
            call.endpoint = call.path
            self._respond(call, json_answer(404, {"detail": "Not Found"}, "not_found"))

    def _serve(self, call: Call, fmt: Format, route: Route) -> None:
        """Auth, limits, Idempotency-Key, credits and faults in the order a real provider would meet them;
        then the work."""
        settings = self._config.settings_for(fmt.name)
        fmt.peek_input(call)
        forced = self.faults.pop_forced(fmt.name)
        answer: Answer | None = None
        admitted = charged = replayed = False
        replay_key: ReplayKey | None = None
        if forced is not None and forced != "ok":
            answer = fmt.fault(forced, settings)
        if answer is None:
            answer = self._check_key(call, fmt, settings)
        if answer is None:
            refused = self.faults.admit(fmt.name, settings, arrived=call.arrived)
            admitted = refused is None
            if refused is not None:
                wait, outcome = refused
                answer = fmt.limit_error("429", outcome)
                answer.retry_after = wait
        idempotency_key = call.headers.get("Idempotency-Key")
        if answer is None and route.billable and idempotency_key:
            key = ReplayKey(fmt.name, idempotency_key, (route.endpoint, call.input_sha256))
            try:
                answer = self.replays.claim(key)  # may wait for a twin still at work
            except Refusal as refusal:
                answer = fmt.error(refusal.status, refusal.message, refusal.code, refusal.outcome)
            else:
                replayed = answer is not None
                replay_key = None if replayed else key
        if answer is None and route.billable:
            charge = self.faults.charge(fmt.name)
            charged = charge == "reserved"
            if charge == "exhausted":
                answer = fmt.limit_error("402", "credits")
        if answer is None and forced is None:
            kind = self.faults.draw(settings)
            answer = fmt.fault(kind, settings) if kind else None
        release = functools.partial(self.faults.release, fmt.name) if admitted else None
        try:
            if not replayed:  # a kept answer is looked up, not worked out again
                self._pause(settings)
            if answer is None:
                answer = self._work(call, fmt, route, settings)
        except BaseException:
            if release is not None:
                release()
            raise
        finally:
            if replay_key is not None:
                # Before a hung answer's hang: whoever waits for this key need not wait for that too.
                self.replays.finish(replay_key, answer)
        if charged and not (answer.status is not None and 200 <= answer.status < 300):
            self.faults.refund(fmt.name)
        if answer.status is not None:
            answer.headers.update(fmt.answer_headers(settings))
        self._respond(call, answer, before_send=release)

    def _work(self, call: Call, fmt: Format, route: Route, settings: SimulatorConfig) -> Answer:
        try:
            return route.handle(call, settings)
        except Refusal as refusal:
            return fmt.error(refusal.status, refusal.message, refusal.code, refusal.outcome, refusal.field)
        except OperationParamsError as error:
            return fmt.error(400, str(error), "invalid_parameters", "bad_request")
        except PermanentError as error:
            refusal = fmt.refusal_for(error)
            return fmt.error(refusal.status, refusal.message, refusal.code, refusal.outcome)
        except Exception as error:
            # A bug here must still look like a provider's 500, so the client's retry path is what gets tested.
            logger.exception("The provider simulator failed on %s %s", call.method, call.path)
            return fmt.error(
                500, f"Simulator error: {type(error).__name__}", "internal_error", "simulator_error"
            )

    def _check_key(self, call: Call, fmt: Format, settings: SimulatorConfig) -> Answer | None:
        key = settings.key
        if fmt.self_hosted and "key" not in self._config.for_provider.get(fmt.name, {}):
            key = None  # nobody configures a key for their own rembg unless they mean to
        if key is None:
            return None
        presented = fmt.presented_key(call.headers)
        if presented is not None and hmac.compare_digest(presented.encode(), key.encode()):
            return None
        return fmt.auth_failure(missing=presented is None)

    def _pause(self, settings: SimulatorConfig) -> None:
        delay = settings.latency_ms + self.faults.jitter_ms(settings)
        if delay > 0:
            self._stopping.wait(delay / 1000)

    def _respond(self, call: Call, answer: Answer, before_send: Callable[[], None] | None = None) -> None:
        """Log the exchange, then send `answer` (or break the connection as it says).

        Logged first, so whoever has read an answer finds it in the log. `ended` is taken just before, so a
        request sent after the client read this answer always has a later `started`; the concurrency slot
        is given back at that moment for the same reason.
        """
        call.answered = True
        if answer.action == "timeout":
            self._stopping.wait(answer.hang_seconds)
        headers = dict(answer.headers)
        retry_after = retry_deadline = None
        if before_send is not None:
            before_send()
        ended = time.time()
        if answer.retry_after is not None:
            if answer.retry_as_date:
                # HTTP-dates have whole seconds: name the first one at or after the wait we mean.
                retry_deadline = float(math.ceil(ended + answer.retry_after))
                headers["Retry-After"] = formatdate(retry_deadline, usegmt=True)
                retry_after = retry_deadline - ended
            else:
                seconds = math.ceil(answer.retry_after)
                headers["Retry-After"] = str(seconds)
                retry_after, retry_deadline = float(seconds), ended + seconds
        self._log.record(
            {
                "seq": call.seq,
                "kind": call.kind,
                "provider": call.provider,
                "endpoint": call.endpoint,
                "method": call.method,
                "path": call.path,
                "started": call.started,
                "ended": ended,
                "status": answer.status,
                "outcome": answer.outcome,
                "retry_after": retry_after,
                "retry_deadline": retry_deadline,
                "input_sha256": call.input_sha256,
                "request_id": answer.request_id or call.request_id,
            }
        )
        if answer.action == "reset":
            call.exchange.reset()
        elif answer.action == "timeout":
            call.exchange.hang_up()  # still without a word
        else:
            assert answer.status is not None
            headers["Content-Type"] = answer.content_type
            headers["Content-Length"] = str(len(answer.body))
            call.exchange.send(answer.status, headers, answer.body)

    # --- control ---

    def _control(self, call: Call, segments: list[str]) -> Answer:
        action = "/".join(segments)
        if action == "config" and call.method == "GET":
            return json_answer(200, self.describe(), "ok")
        if action == "config" and call.method == "POST":
            try:
                changes = call.json_object()
                provider = changes.pop("provider", None)
                preset = changes.pop("preset", None)
                self.configure(provider, preset=preset, **changes)
            except Refusal as refusal:
                return json_answer(400, {"detail": refusal.message}, "bad_request")
            except ValueError as error:
                return json_answer(400, {"detail": str(error)}, "bad_request")
            return json_answer(200, self.describe(), "ok")
        if action == "log" and call.method == "GET":
            kind = (call.query.get("kind") or [None])[-1]
            return json_answer(200, {"entries": self.log(kind)}, "ok")
        if action == "reset" and call.method == "POST":
            self.reset()
            return json_answer(200, {"status": "reset"}, "ok")
        if action == "health" and call.method == "GET":
            return json_answer(200, {"status": "ok", "urls": self.urls()}, "ok")
        return json_answer(404, {"detail": "Not Found"}, "not_found")
