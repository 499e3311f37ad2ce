"""End to end: N twelve-megapixel JPEGs through `manage.py process` against the renderer alone.

`manage.py process DIR --recipe R --wait` imports the folder, enqueues, and runs one burst worker per
core, as a user would. The renderer-only figure is `run_pipeline` on the same bytes with the same
steps and outputs, pinned to one core, for --sample of the images: its mean × N ÷ cores is what the
run would take if nothing but rendering cost anything. The ratio of the two is the target (≤ 1.15×);
the rest is broken down from the tasks' own timings: the pipeline inside the workers, storing outputs
(files + rows), loading the source, and what lies outside a task (RQ dequeue and bookkeeping, the
claim and the final UPDATE, worker start). The import (hash, probe, thumbnail, store) is reported
apart: it happens before the first task is enqueued.

The corpus is --distinct photos (jobs.samples) with a unique comment segment per file, so every file
has its own bytes (a campaign stores the same bytes once) at the cost of generating only a few.

    python -m benchmarks.end_to_end [--images 1000] [--megapixels 12] [--recipe ecommerce-outputs]
                                    [--sample 40] [--distinct 8]

The default recipe is the e-commerce pack's six outputs without its steps (the renderer's work
alone); any ready recipe slug works. Everything runs in a throwaway directory with its own embedded
Redis and SQLite database.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench-out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--megapixels", type=float, default=12)
    parser.add_argument("--recipe", default="ecommerce-outputs")
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--distinct", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    cores = os.cpu_count() or 1
    folder = make_corpus(args.images, args.megapixels, args.distinct)
    workdir = Path(tempfile.mkdtemp(prefix="pixelmill-bench-e2e-"))
    from dashboard.redis_server import EmbeddedRedis

    with EmbeddedRedis() as redis_server:
        env = {
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "PIXELMILL_MEDIA_ROOT": str(workdir / "media"),
            "PIXELMILL_DATA_DIR": str(workdir),
            "PIXELMILL_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        recipe = install_recipe(args.recipe)
        per_image, cpu_per_image = renderer_only(folder, recipe, args.sample)
        ideal = per_image * args.images / cores
        print(
            f"{args.images} JPEGs of {args.megapixels:g} MP, recipe {args.recipe}; {cores} cores. Renderer alone: "
            f"{per_image * 1000:.0f} ms per image ({cpu_per_image * 1000:.0f} ms CPU; mean of {args.sample}, one core) "
            f"→ {ideal:.1f} s for all on {cores} cores"
        )
        # The same, one renderer per core at once: what the hardware gives two busy cores side by side.
        parallel = statistics.mean(
            wall for wall, _ in renderer_children(folder, recipe, args.sample, list(range(cores)))
        )
        print(
            f"Renderer alone, one process per core at the same time: {parallel * 1000:.0f} ms per image "
            f"→ {parallel * args.images / cores:.1f} s for all"
        )
        run = run_process_command(folder, args.recipe)
        report(run, ideal, cores, args.images)
        print(
            f"Against the renderer running one process per core at once: {run['processing'] / (parallel * args.images / cores):.2f}×"
        )
        # Wall time depends on what else the machine runs; CPU time much less so.
        cpu_ratio = run["cpu"] / (cpu_per_image * args.images)
        print(
            f"CPU: the command and its workers used {run['cpu']:.0f} CPU-seconds, the renderer alone would use "
            f"{cpu_per_image * args.images:.0f}: {cpu_ratio:.2f}× (import included). As last sampled: the "
            f"command (import, enqueue, progress polling) {run['command_cpu']:.0f} s, the workers "
            f"{run['worker_cpu']:.0f} s = {run['worker_cpu'] / (cpu_per_image * args.images):.2f}× the renderer's"
        )
    shutil.rmtree(workdir, ignore_errors=True)  # the run's database and its 7,000 stored files


def make_corpus(images: int, megapixels: float, distinct: int) -> Path:
    from benchmarks.corpus import dimensions
    from jobs.samples import product_jpeg

    folder = CORPUS / f"e2e-{megapixels:g}mp-{images}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == images:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    width, height = dimensions(megapixels)
    bases = [product_jpeg(width, height, seed) for seed in range(distinct)]
    for n in range(images):
        base = bases[n % distinct]
        comment = f"pixelmill benchmark image {n}".encode()
        # A COM segment right after SOI: new bytes, the same pixels.
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        (folder / f"photo-{n:04d}.jpg").write_bytes(base[:2] + segment + base[2:])
    return folder


def install_recipe(slug: str):
    from dashboard.models import Recipe
    from dashboard.ready_recipes import READY_RECIPES, install_ready_recipes

    install_ready_recipes()
    if slug == "ecommerce-outputs":
        recipe = Recipe.objects.create(name="E-commerce outputs", slug=slug)
        ecommerce = next(r for r in READY_RECIPES if r["slug"] == "ecommerce-pack")
        for position, output in enumerate(ecommerce["outputs"], start=1):
            recipe.outputs.create(position=position, **output)
        recipe.publish_version()
    return Recipe.objects.get(slug=slug)


def renderer_only(folder: Path, recipe, sample: int, core: int | None = None) -> tuple[float, float]:
    """Mean wall and CPU seconds of run_pipeline per image, in a child pinned to one core (like one worker)."""
    return renderer_children(
        folder, recipe, sample, [core if core is not None else max(os.sched_getaffinity(0))]
    )[0]


def renderer_children(folder: Path, recipe, sample: int, cores: list[int]) -> list[tuple[float, float]]:
    """`renderer_only` in one child per listed core, all at once."""
    code = (
        "import sys, time, json, os; sys.path.insert(0, sys.argv[1]); os.sched_setaffinity(0, {int(sys.argv[2])})\n"
        "from jobs.outputs import OutputSpec\nfrom jobs.rendering import run_pipeline\nfrom jobs.operations import build_operation\n"
        "d = json.loads(sys.argv[3]); steps = [build_operation(s['operation'], s['params']) for s in d['steps']]\n"
        "specs = [OutputSpec.from_dict(o) for o in d['outputs']]; paths = sys.argv[4:]\n"
        "run_pipeline(open(paths[0], 'rb').read(), steps, specs)\n"
        "total = cpu = 0.0\nfor p in paths:\n    data = open(p, 'rb').read(); t = time.perf_counter(); c = time.process_time()\n"
        "    run_pipeline(data, steps, specs); total += time.perf_counter() - t; cpu += time.process_time() - c\n"
        "print(total / len(paths), cpu / len(paths))\n"
    )
    import json

    paths = sorted(folder.glob("*.jpg"))[:sample]
    definition = json.dumps(recipe.current_version().definition)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(ROOT), str(core), definition, *map(str, paths)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for core in cores
    ]
    results = []
    for child in children:
        output, _ = child.communicate()
        if child.returncode:
            raise RuntimeError("a renderer child failed")
        wall, cpu = output.split()
        results.append((float(wall), float(cpu)))
    return results


class WorkerMemory(threading.Thread):
    """The peak resident size of each child of a process (the burst workers), and the CPU seconds of
    the process and of each child as last seen alive, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peaks, self.cpu, self.stopped = pid, {}, {}, threading.Event()

    def run(self) -> None:
        from benchmarks.remote_throughput import children, rss_kb

        while not self.stopped.wait(0.1):
            self.cpu[self.pid] = cpu_seconds(self.pid) or self.cpu.get(self.pid, 0.0)
            for child in children(self.pid):
                self.peaks[child] = max(self.peaks.get(child, 0), rss_kb(child))
                self.cpu[child] = cpu_seconds(child) or self.cpu.get(child, 0.0)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_process_command(folder: Path, recipe: str) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "process", str(folder), "--recipe", recipe, "--campaign", "E2E", "--wait"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    memory = WorkerMemory(process.pid)
    memory.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output, _ = process.communicate()
    memory.stop()
    wall = time.perf_counter() - started
    # The command waits for its workers, so their CPU time is counted in its children's.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    match = re.search(r"of (\d+) task\(s\) in ([\d.]+) s", output)
    if not match:
        raise RuntimeError(f"manage.py process said:\n{output}")
    command_cpu = memory.cpu.pop(process.pid, 0.0)
    return {
        "wall": wall, "processing": float(match.group(2)), "cpu": cpu, "memory": memory.peaks,
        "command_cpu": command_cpu, "worker_cpu": sum(memory.cpu.values()),
    }  # fmt: skip


def report(run: dict, ideal: float, cores: int, images: int) -> None:
    from django.conf import settings as django_settings

    from dashboard.models import Campaign, SourceImage, Task

    campaign = Campaign.objects.get(name="E2E")
    tasks = Task.objects.filter(campaign=campaign)
    succeeded = tasks.filter(state=Task.State.SUCCEEDED).count()
    timings = [task.timings for task in tasks.filter(state=Task.State.SUCCEEDED).only("timings")]
    total = sum(t.get("total", 0) for t in timings) / 1000
    store = sum(t.get("store", 0) for t in timings) / 1000
    pipeline = (
        sum(sum(v for k, v in t.items() if k not in ("total", "store", "cpu_wait")) for t in timings) / 1000
    )
    # A worker's threads wait for its one CPU turn while another renders: that time overlaps the other
    # thread's work, so it is reported beside the worker-seconds, not inside them.
    waited = sum(t.get("cpu_wait", 0) for t in timings) / 1000
    load = total - waited - pipeline - store
    worker_seconds = run["processing"] * cores
    outside = worker_seconds - (total - waited)
    first = SourceImage.objects.filter(campaign=campaign).order_by("created_at").first()
    last = SourceImage.objects.filter(campaign=campaign).order_by("-created_at").first()
    imported = (last.created_at - first.created_at).total_seconds() if first and last else 0.0
    ratio = run["processing"] / ideal
    print(
        f"manage.py process: {succeeded}/{images} succeeded; processing (enqueue → last task) {run['processing']:.1f} s "
        f"= {ratio:.2f}× the renderer alone ÷ {cores} cores (target ≤ 1.15×: {'met' if ratio <= 1.15 else 'MISSED'}); "
        f"whole command {run['wall']:.1f} s, of which import ≈ {imported:.1f} s"
    )
    print(
        f"Where the {worker_seconds:.0f} worker-seconds went ({cores} workers × {run['processing']:.1f} s):"
    )
    for label, seconds in (
        ("pipeline in the workers (decode, steps, render)", pipeline),
        ("storing outputs (files and Output rows)", store),
        ("loading the source, building the recipe", load),
        ("outside the task: dequeue, claim, final UPDATE, RQ bookkeeping, worker start, idle tail", outside),
    ):
        print(f"  {label:88} {seconds:7.1f} s  {100 * seconds / worker_seconds:5.1f}%")
    threads = django_settings.PIXELMILL_WORKER_THREADS
    print(
        f"  (threads per worker: {threads}; tasks waiting for their worker's CPU turn: {waited:.1f} s in all)"
    )
    mean_pipeline = pipeline / max(1, succeeded) * 1000
    print(
        f"  (pipeline per image inside a worker: {mean_pipeline:.0f} ms, with the other worker busy beside it)"
    )
    if run["memory"]:
        peaks = sorted(run["memory"].values())
        print(f"Peak resident size per worker: {', '.join(f'{kb / 1024:.0f} MB' for kb in peaks)}")


if __name__ == "__main__":
    main()
