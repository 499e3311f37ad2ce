"""Run the AI provider simulator (PixelPanda, remove.bg, Photoroom, rembg, fal) in the foreground, with faults on demand."""

from __future__ import annotations

import signal
import time
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError

from simulator import PRESETS, ProviderSimulator, SimulatorConfig

# Command-line option → SimulatorConfig field, for the options that map one to one.
OPTION_FIELDS = {
    "latency_ms": "latency_ms",
    "jitter_ms": "jitter_ms",
    "rate": "rate_per_second",
    "burst": "burst",
    "concurrency": "concurrency",
    "p429": "p429",
    "p503": "p503",
    "p500": "p500",
    "p_reset": "p_reset",
    "p_timeout": "p_timeout",
    "p400": "p400",
    "p402": "p402",
    "retry_after": "retry_after_seconds",
    "hang_seconds": "hang_seconds",
    "credits": "credits",
    "key": "key",
    "seed": "seed",
    "fal_queue_seconds": "fal_queue_seconds",
    "fal_run_seconds": "fal_run_seconds",
    "log": "log_path",
}


class Command(BaseCommand):
    help = __doc__
    # Nothing here touches the database or the app's models.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8700, help="0 picks a free port (printed on start).")
        parser.add_argument("--preset", choices=sorted(PRESETS), help="Fault probabilities to start from.")
        parser.add_argument("--latency-ms", type=float)
        parser.add_argument("--jitter-ms", type=float)
        parser.add_argument("--rate", type=float, help="Requests per second per provider (token bucket).")
        parser.add_argument("--burst", type=int, help="Token bucket size.")
        parser.add_argument("--concurrency", type=int, help="Requests in flight per provider.")
        for name in ("p429", "p503", "p500", "p400", "p402"):
            parser.add_argument(f"--{name}", type=float)
        parser.add_argument("--p-reset", type=float)
        parser.add_argument("--p-timeout", type=float)
        parser.add_argument("--retry-after", type=float, help="Seconds an injected 429 asks for.")
        parser.add_argument("--hang-seconds", type=float, help="How long an injected timeout hangs.")
        parser.add_argument("--credits", type=int, help="Each provider's balance; 402 once it is spent.")
        parser.add_argument("--fail-next", help='Outcomes to force first, comma-separated: "429,503,ok".')
        parser.add_argument("--key", help="The API key every provider expects (default sim-key).")
        parser.add_argument("--rembg-key", help="Make the self-hosted rembg server check this key too.")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--fal-queue-seconds", type=float)
        parser.add_argument("--fal-run-seconds", type=float)
        parser.add_argument("--log", help="Append every request to this file as JSON lines.")

    def handle(self, *args, host: str, port: int, preset: str | None, **options) -> None:
        changes = {
            field: options[option] for option, field in OPTION_FIELDS.items() if options[option] is not None
        }
        if options["fail_next"]:
            changes["fail_next"] = [value for value in options["fail_next"].split(",") if value.strip()]
        if options["rembg_key"]:
            changes["for_provider"] = {"rembg": {"key": options["rembg_key"]}}
        try:
            # Explicit options win over the preset's values.
            config = replace(SimulatorConfig(), **{**PRESETS.get(preset or "", {}), **changes})
        except ValueError as error:
            raise CommandError(str(error)) from None

        stopping = False

        def request_stop(signum, frame) -> None:
            # Only set a flag: a signal handler that takes locks can deadlock the thread it interrupted.
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        simulator = ProviderSimulator(config, host=host, port=port)
        try:
            base = simulator.start()
        except OSError as error:
            raise CommandError(f"Cannot listen on {host}:{port}: {error}") from None
        self.stdout.write(self.style.SUCCESS(f"Provider simulator on {base}  (Ctrl-C stops it)"))
        for provider, url in simulator.urls().items():
            self.stdout.write(f"  {provider:<11} {url}")
        self.stdout.write(f"  {'control':<11} {base}/_sim/config  {base}/_sim/log  {base}/_sim/reset")
        rembg_auth = "no key" if not options["rembg_key"] else "key from --rembg-key"
        self.stdout.write(f"  API key: {config.key or 'none'} (rembg: {rembg_auth})")
        if config.log_path:
            self.stdout.write(f"  Logging requests to {config.log_path}")
        self.stdout.flush()
        try:
            while not stopping:
                time.sleep(0.2)
        finally:
            simulator.stop()
            self.stdout.write("Stopped.")
