"""Peak memory of a web process, and of the worker after it, for the heaviest uploads Pixelmill accepts.

Each upload goes through the real web server (gunicorn with `dashboard/gunicorn_config.py`, one worker)
from a file on disk, as a browser sends it. The web worker's peak resident size (VmHWM, reset through
/proc/<pid>/clear_refs just before) is compared with its size before the request. Whatever the upload
left for the workers then runs in one burst `rqworker`, whose peak (ru_maxrss) is reported too.

The inputs, made once into bench-out/upload-memory/ (deterministic):

- a 9,999 × 9,999 PNG: 100 MP, just under PIXELMILL_MAX_PIXELS;
- a 12,000 × 8,333 JPEG, baseline and progressive (a progressive decode buffers every coefficient);
- a zip of six BMPs (about 190 MB each) at a compression ratio of about 180, under the 200 that is
  refused as a zip bomb: a few MB that unpack to over a gigabyte;
- a 4,000 × 4,000 PNG: 16 MP, the most PIXELMILL_WEB_DECODE_MAX_PIXELS lets a web request decode;
- 400 JPEGs of 2.4 MB in one request (960 MB): each file under FILE_UPLOAD_MAX_MEMORY_SIZE.

    python -m benchmarks.upload_memory [--only png,jpeg,progressive,zip,png16,many]

Everything runs in a throwaway directory with its own embedded Redis and SQLite database.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.web_server import Gunicorn, set_up_django, status_kb

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "bench-out" / "upload-memory"
ZIP_MEMBERS = 6
ZIP_RATIO = 180


def make_png(path: Path) -> None:
    from jobs.samples import product_photo

    product_photo(9999, 9999, seed=3).save(path, "PNG", compress_level=1)


def make_jpeg(path: Path, progressive: bool = False) -> None:
    from jobs.samples import product_photo

    product_photo(12000, 8333, seed=4).save(path, "JPEG", quality=90, progressive=progressive)


def make_progressive_jpeg(path: Path) -> None:
    make_jpeg(path, progressive=True)


def bmp_member(seed: int, noisy_rows: int) -> bytes:
    """A 7,950 × 7,950 BMP (about 190 MB): a flat colour with `noisy_rows` rows of noise, which set how well
    it compresses."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((7950, 7950, 3), (200, 180 + seed, 160), dtype=np.uint8)
    pixels[:noisy_rows] = rng.integers(0, 256, (noisy_rows, 7950, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "BMP")
    return buffer.getvalue()


def make_zip(path: Path) -> None:
    """Six BMPs, each compressed at about ZIP_RATIO: the noise rows are found by trying one member."""
    import zlib

    size = len(bmp_member(0, 0))
    noisy = int(7950 / ZIP_RATIO)
    for _ in range(8):  # zlib's level 6 is close to deflate in zipfile; adjust the noise to the ratio
        compressed = len(zlib.compress(bmp_member(0, noisy), 6))
        ratio = size / compressed
        if abs(ratio - ZIP_RATIO) < 4:
            break
        noisy = max(1, round(noisy * ratio / ZIP_RATIO))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n in range(ZIP_MEMBERS):
            archive.writestr(f"shoot/look-{n}.bmp", bmp_member(n, noisy))


def make_png16(path: Path) -> None:
    from jobs.samples import product_photo

    product_photo(4000, 4000, seed=5).save(path, "PNG", compress_level=1)


MANY_FILES = 400
MANY_BYTES = 2_400_000


def make_many(path: Path) -> None:
    """MANY_FILES JPEGs of MANY_BYTES each, distinct bytes (a different tail after the picture's end)."""
    from jobs.samples import product_photo

    buffer = io.BytesIO()
    product_photo(2400, 1800, seed=6).save(buffer, "JPEG", quality=95)
    picture = buffer.getvalue()[:MANY_BYTES]
    path.mkdir()
    for n in range(MANY_FILES):
        tail = n.to_bytes(4, "big") * ((MANY_BYTES - len(picture)) // 4)
        (path / f"look-{n:03d}.jpg").write_bytes(picture + tail)


CASES: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    "png": ("big.png", "PNG 9,999 × 9,999 (100 MP)", make_png),
    "jpeg": ("big.jpg", "JPEG 12,000 × 8,333 (100 MP), baseline", make_jpeg),
    "progressive": (
        "big-progressive.jpg",
        "JPEG 12,000 × 8,333 (100 MP), progressive",
        make_progressive_jpeg,
    ),
    "zip": ("shoot.zip", f"zip of {ZIP_MEMBERS} BMPs at ratio ~{ZIP_RATIO}", make_zip),
    "png16": ("poster.png", "PNG 4,000 × 4,000 (16 MP)", make_png16),
    "many": ("many", f"{MANY_FILES} JPEGs of {MANY_BYTES / 1e6:.1f} MB in one request", make_many),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help="Comma-separated cases: " + ", ".join(CASES))
    # Internal: the inputs are made, and the worker runs, in processes of their own, so that neither this
    # process's size nor the inputs' counts in a peak (a child's ru_maxrss starts from its parent's size).
    parser.add_argument("--make", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.make:
        filename, _, make = CASES[args.make]
        make(INPUTS / filename)
        return
    if args.worker:
        run_worker()
        return
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    INPUTS.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        filename, _, _ = CASES[name]
        if not (INPUTS / filename).exists():
            print(f"Making {filename} …", flush=True)
            subprocess.run(
                [sys.executable, "-m", "benchmarks.upload_memory", "--make", name], cwd=ROOT, check=True
            )

    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-upload-"))
    from dashboard.redis_server import EmbeddedRedis

    with EmbeddedRedis() as redis_server:
        set_up_django(workdir, redis_server.url)
        from django.contrib.auth.models import User

        from dashboard.models import Campaign, Team

        team = Team.objects.create(name="Marketing")
        user = User.objects.create_user("bench", password="bench-password-1")
        team.members.add(user)
        print(f"{os.cpu_count()} cores; web: gunicorn, dashboard/gunicorn_config.py, 1 worker\n")
        with Gunicorn() as server:
            client = server.client(user)
            for name in chosen:
                filename, label, _ = CASES[name]
                campaign = Campaign.objects.create(name=label, team=team, created_by=user)
                measure(client, server, campaign, INPUTS / filename, label)
    shutil.rmtree(workdir, ignore_errors=True)


def measure(client, server: Gunicorn, campaign, path: Path, label: str) -> None:
    page = client.get(f"/campaigns/{campaign.pk}/")
    token = page.cookies.get("csrftoken") or client.cookies.get("csrftoken")
    paths = sorted(path.iterdir()) if path.is_dir() else [path]
    handles = [item.open("rb") for item in paths]
    before = server.reset_peak()
    started = time.perf_counter()
    try:
        response = client.post(
            f"/campaigns/{campaign.pk}/upload/",
            files=[
                ("files", (item.name, handle, "application/octet-stream"))
                for item, handle in zip(paths, handles, strict=True)
            ],
            headers={"X-CSRFToken": token, "Accept": "application/json"},
        )
    finally:
        for handle in handles:
            handle.close()
    elapsed = time.perf_counter() - started
    peak = server.peak_kb()
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    size = sum(item.stat().st_size for item in paths)
    print(f"{label} ({size / 1e6:.1f} MB): HTTP {response.status_code} in {elapsed:.1f} s")
    print(f"  answer: {(answer.get('message') or answer.get('error') or response.text)[:300]}")
    print(
        f"  web worker: {before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB (+{(peak - before) / 1024:.0f} MB)"
    )
    worker_started = time.perf_counter()
    worker = subprocess.run(
        [sys.executable, "-m", "benchmarks.upload_memory", "--worker"],
        cwd=ROOT, env=os.environ.copy(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    worker_peak = int(worker.stdout.split()[-1])
    sources = campaign.sources.count()
    print(
        f"  then a burst worker: {time.perf_counter() - worker_started:.1f} s, peak {worker_peak / 1024:.0f} MB; "
        f"the campaign holds {sources} image(s)\n",
        flush=True,
    )


def run_worker() -> None:
    """A burst worker in this process; prints its peak resident size (kB) last."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("rqworker", "control", "default", "--burst")
    print(status_kb(os.getpid(), "VmHWM"))


if __name__ == "__main__":
    main()
