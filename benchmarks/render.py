"""The renderer against naive Pillow, libvips and the decode-plus-encode floor, side by side in one run.

For every corpus image (12 and 24 MP, product and scene, JPEG and PNG) and both shipped packs
(e-commerce: 150/800/2000 px pads as JPEG and WebP; social: five fills as JPEG), each contender does
the same work (see benchmarks.contenders) on one core. Printed per image and pack:

- time: CPU time of the process (all its threads), the least of --repeat runs, contenders interleaved.
  CPU time, not wall time: on a shared machine another job's load stretches the wall clock of a
  single-threaded render but hardly its CPU time (wall times are kept in the JSON);
- ratios: naive ÷ Pixelmill, libvips ÷ Pixelmill (above 1: Pixelmill is faster), Pixelmill ÷ floor;
- SSIM: the lowest over the pack's outputs, of the rendered pixels against a reference resized with
  LANCZOS from the full-resolution decode (both rendered losslessly, so the encoder's own loss, the
  same for every contender, does not hide the resampling);
- peak memory: the peak resident size of a fresh process that renders once (the interpreter and
  imports included), and how much of it the render added.

Then the cost of each encoder option on the zoom output, and of one resize through each resampler
(Pillow, Pixelmill's, libvips, OpenCV when installed). Everything runs pinned to one core.

    python -m benchmarks.render [--megapixels 12,24] [--subjects product,scene] [--formats jpeg,png]
                                [--packs ecommerce-pack,social-ads-pack] [--repeat 3]
    python -m benchmarks.render --real [--real-dir DIR] [--photos id,id] [--no-memory]

With --real the corpus is the real photos of the real-photo cache (benchmarks.corpus.real_corpus)
instead of the generated ones, and the summary adds the geometric mean of the ratio to libvips.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-out" / "render.json"
REAL_RESULTS = ROOT / "bench-out" / "render-real.json"
ORDER = ("pixelmill", "naive", "libvips", "floor")


def pin_to_one_core() -> int:
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def pack_specs(slugs: list[str]) -> dict[str, list]:
    """The output specs of the shipped recipes, read without a database: unsaved RecipeOutput rows turn
    their admin fields (max_kb, ...) into specs exactly as a worker's recipe does."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from dashboard.models import RecipeOutput
    from dashboard.ready_recipes import READY_RECIPES

    packs = {
        recipe["slug"]: [RecipeOutput(**output).as_spec() for output in recipe["outputs"]]
        for recipe in READY_RECIPES
    }
    return {slug: packs[slug] for slug in slugs}


def lossless(specs: list) -> list:
    return [dataclasses.replace(spec, format="png") for spec in specs]


def reference_pictures(data: bytes, specs: list) -> list:
    """Each output resized with plain LANCZOS from the full-resolution decode, then framed."""
    from PIL import Image

    from jobs.imaging import decode_image
    from jobs.rendering import frame

    full = decode_image(data)
    return [
        frame(full.resize(spec.resized_size(full.size), Image.Resampling.LANCZOS), spec, {}) for spec in specs
    ]


def lowest_ssim(contender, data: bytes, specs: list, references: list) -> float:
    return min(output_ssims(contender, data, specs, references).values())


def output_ssims(contender, data: bytes, specs: list, references: list) -> dict[str, float]:
    """SSIM of each output (by spec name) against its reference, both lossless."""
    from PIL import Image

    from benchmarks.quality import ssim

    contender.prepare(data, lossless(specs))
    outputs = contender.run()[: len(specs)]
    return {
        spec.name: ssim(Image.open(io.BytesIO(out)), ref)
        for spec, out, ref in zip(specs, outputs, references, strict=True)
    }


def measure_memory(name: str, path: Path, specs: list) -> dict[str, float]:
    """Peak RSS of a fresh process rendering once (see `memory_child`)."""
    payload = json.dumps([spec.to_dict() for spec in specs])
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.render", "--memory-child", name, str(path), payload],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def memory_child(name: str, path: str, payload: str) -> None:
    from benchmarks.contenders import CONTENDERS
    from jobs.outputs import OutputSpec

    specs = [OutputSpec.from_dict(item) for item in json.loads(payload)]
    contender = CONTENDERS[name]()
    data = Path(path).read_bytes()
    contender.prepare(data, specs)
    before = high_water_kb()
    contender.run()
    peak = high_water_kb()
    print(json.dumps({"peak_mb": peak / 1024, "added_mb": (peak - before) / 1024}))


def high_water_kb() -> int:
    """This process's peak resident size (VmHWM). Not ru_maxrss: Linux carries that over an exec from
    the parent, which would report the benchmark's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def time_contenders(contenders: dict, data: bytes, specs: list, repeat: int) -> dict[str, dict[str, float]]:
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    for contender in contenders.values():
        contender.prepare(data, specs)
        contender.run()  # warm: first-call imports and caches are not what is measured
    for _ in range(repeat):
        for name, contender in contenders.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            contender.run()
            cpu[name].append((time.process_time() - started_cpu) * 1000)
            wall[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {
            "best_ms": min(cpu[name]),
            "median_ms": statistics.median(cpu[name]),
            "best_wall_ms": min(wall[name]),
        }
        for name in contenders
    }


def encoder_costs(data: bytes, repeat: int) -> list[dict[str, object]]:
    """Time and size of the 2000×2000 zoom picture under each encoder option."""
    from benchmarks.contenders import captured_encodes
    from jobs.outputs import OutputSpec
    from jobs.rendering import encode, run_pipeline

    pictures: list = []
    with captured_encodes(pictures):
        run_pipeline(data, [], [OutputSpec("zoom", 2000, 2000, "pad", "jpeg")])
    picture = pictures[0][0]
    variants = [("jpeg", {}), ("jpeg", {"progressive": True})]
    variants += [("webp", {"webp_method": m}) for m in range(7)]
    variants += [("avif", {"avif_speed": s}) for s in (10, 8, 6, 4)]
    rows = []
    for fmt, option in variants:
        spec = OutputSpec.from_dict(
            {"name": "zoom", "width": 2000, "height": 2000, "fit": "pad", "format": fmt, **option}
        )
        best, size = float("inf"), 0
        for _ in range(repeat):
            started = time.process_time()
            size = len(encode(picture, spec))
            best = min(best, (time.process_time() - started) * 1000)
        rows.append({"format": fmt, "option": option or "default", "ms": best, "bytes": size})
    return rows


def resampler_costs(data: bytes, repeat: int) -> list[dict[str, object]]:
    """One resize, several resamplers, on the same decoded picture: the 2000 px zoom from the 1/2 draft
    decode, and the 1080×1920 story window from the full decode (the social pack's largest resize).
    CPU ms (least of `repeat`) and SSIM against Pillow's LANCZOS. OpenCV is timed when it is
    installed (`pip install opencv-python-headless`); it is not a dependency."""
    from PIL import Image

    from benchmarks.quality import ssim
    from jobs.imaging import decode_image, read_dimensions

    width, height = read_dimensions(data)
    zoom = (2000, round(2000 * height / width))
    full = decode_image(data)
    story_width = round(full.height * 1080 / 1920)
    left = (full.width - story_width) / 2
    cases = [
        ("zoom", decode_image(data, min_size=zoom), zoom, None),
        ("story", full, (1080, 1920), (left, 0.0, left + story_width, float(full.height))),
    ]
    rows = []
    for label, picture, size, box in cases:
        if picture.size == size:
            continue  # a 12 MP photo's 1/2 decode is the zoom already
        reference = picture.resize(size, Image.Resampling.LANCZOS, box=box)
        for name, run in resamplers(picture, size, box).items():
            best, result = float("inf"), None
            for _ in range(repeat):
                started = time.process_time()
                result = run()
                best = min(best, (time.process_time() - started) * 1000)
            rows.append(
                {"case": label, "from": list(picture.size), "to": list(size), "resampler": name, "ms": best,
                 "ssim": ssim(result.convert("RGB"), reference)}
            )  # fmt: skip
    return rows


def resamplers(picture, size: tuple[int, int], box: tuple[float, float, float, float] | None) -> dict:
    """Each resampler as a function of no arguments that makes the resized picture. libvips and OpenCV
    get their own copy of the (integer-rounded) region first, untimed: their cost of reaching Pillow's
    pixels is left out."""
    import numpy as np
    from PIL import Image

    from jobs.resampling import resample

    region = picture.crop(tuple(round(v) for v in box or (0, 0, picture.width, picture.height)))
    runs = {
        "Pillow LANCZOS": lambda: picture.resize(size, Image.Resampling.LANCZOS, box=box),
        "Pillow LANCZOS, reducing_gap 1.25": lambda: picture.resize(
            size, Image.Resampling.LANCZOS, box=box, reducing_gap=1.25
        ),
        "Pixelmill (fast_image_resize Lanczos-3)": lambda: resample(picture, size, box),
    }
    try:
        import pyvips

        vips = pyvips.Image.new_from_memory(region.tobytes(), region.width, region.height, 3, "uchar")
        scale = (size[0] / region.width, size[1] / region.height)

        def run_vips():
            out = vips.resize(scale[0], vscale=scale[1], kernel="lanczos3")
            return Image.frombytes("RGB", (out.width, out.height), out.write_to_memory())

        runs["libvips resize lanczos3"] = run_vips
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        array = np.asarray(region)
        for name in ("INTER_AREA", "INTER_LANCZOS4"):
            flag = getattr(cv2, name)
            runs[f"OpenCV {name}"] = lambda flag=flag: Image.fromarray(
                cv2.resize(array, size, interpolation=flag)
            )
    except ImportError:
        pass
    return runs


def machine() -> dict[str, str]:
    import PIL

    info = {"python": platform.python_version(), "pillow": PIL.__version__, "cores": str(os.cpu_count())}
    try:
        import pyvips

        info["libvips"] = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    except ImportError:
        pass
    with open("/proc/cpuinfo") as handle:
        info["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?"
        )
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", default="12,24")
    parser.add_argument("--subjects", default="product,scene")
    parser.add_argument("--formats", default="jpeg,png")
    parser.add_argument("--packs", default="ecommerce-pack,social-ads-pack")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--real", action="store_true", help="the real-photo cache instead of generated photos"
    )
    parser.add_argument(
        "--real-dir", type=Path, default=None, help="the real-photo cache (has manifest.json)"
    )
    parser.add_argument("--photos", default="", help="with --real: only these photo ids, comma-separated")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("CONTENDER", "PATH", "SPECS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    core = pin_to_one_core()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    from benchmarks.contenders import CONTENDERS
    from benchmarks.corpus import REAL_CORPUS_DIR, build_corpus, real_corpus

    packs = pack_specs(args.packs.split(","))
    if args.real:
        ids = tuple(filter(None, args.photos.split(",")))
        corpus = real_corpus(args.real_dir or REAL_CORPUS_DIR, ids)
    else:
        corpus = build_corpus(
            tuple(int(n) for n in args.megapixels.split(",")),
            tuple(args.subjects.split(",")),
            tuple(args.formats.split(",")),
        )
    contenders = {name: CONTENDERS[name]() for name in ORDER}
    info = machine()
    print(
        f"Renderer benchmark on core {core} of {info['cores']} ({info['cpu']}); Python {info['python']}, "
        f"Pillow {info['pillow']}, libvips {info.get('libvips', '-')}; CPU ms, best of {args.repeat}."
    )
    print(
        f"{'image':22} {'pack':16} {'pixelmill':>9} {'naive':>7} {'libvips':>7} {'floor':>6} │ "
        f"{'×naive':>6} {'×vips':>6} {'÷floor':>6} │ {'SSIM pm':>7} {'naive':>6} {'vips':>6} │ "
        f"{'peak MB pm':>10} {'naive':>5} {'vips':>5}"
    )
    rows = []
    for image in corpus:
        data = image.read()
        for slug, specs in packs.items():
            try:
                timed = time_contenders(contenders, data, specs, args.repeat)
                references = reference_pictures(data, specs)
                per_output = output_ssims(contenders["pixelmill"], data, specs, references)
                quality = {
                    name: lowest_ssim(contenders[name], data, specs, references)
                    for name in ("naive", "libvips")
                }
                quality["pixelmill"] = min(per_output.values())
            except Exception as error:
                # A real photo one contender cannot read (libvips and HEIC, say) is reported, not fatal.
                print(f"{image.label:22} {slug:16} skipped: {type(error).__name__}: {error}", flush=True)
                continue
            no_memory = {"peak_mb": float("nan"), "added_mb": float("nan")}
            memory = {
                name: no_memory if args.no_memory else measure_memory(name, image.path, specs)
                for name in ("pixelmill", "naive", "libvips")
            }
            best = {name: timed[name]["best_ms"] for name in ORDER}
            row = {
                "image": image.label, "megapixels": image.megapixels, "format": image.format, "subject": image.subject,
                "pack": slug, "bytes": len(data), "times": timed, "ssim": quality, "ssim_outputs": per_output,
                "memory": memory,
                "vs_naive": best["naive"] / best["pixelmill"], "vs_libvips": best["libvips"] / best["pixelmill"],
                "over_floor": best["pixelmill"] / best["floor"],
            }  # fmt: skip
            rows.append(row)
            print(
                f"{image.label:22} {slug:16} {best['pixelmill']:7.0f}ms {best['naive']:5.0f}ms {best['libvips']:5.0f}ms "
                f"{best['floor']:4.0f}ms │ {row['vs_naive']:5.2f}× {row['vs_libvips']:5.2f}× {row['over_floor']:5.2f}× │ "
                f"{quality['pixelmill']:7.4f} {quality['naive']:6.4f} {quality['libvips']:6.4f} │ "
                f"{memory['pixelmill']['peak_mb']:10.0f} {memory['naive']['peak_mb']:5.0f} {memory['libvips']['peak_mb']:5.0f}",
                flush=True,
            )
    summarise(rows)
    if args.real:
        summarise_real(rows)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        REAL_RESULTS.write_text(json.dumps({"machine": info, "core": core, "rows": rows}, indent=1))
        print(f"\nAll figures: {REAL_RESULTS.relative_to(ROOT)}")
        return
    zoom_source = next((image for image in corpus if image.format == "jpeg"), corpus[0])
    costs = encoder_costs(zoom_source.read(), args.repeat)
    print(
        f"\nEncoder options on the 2000×2000 zoom output of {zoom_source.label} (CPU ms, best of {args.repeat}):"
    )
    for cost in costs:
        option = (
            cost["option"]
            if cost["option"] == "default"
            else ", ".join(f"{k}={v}" for k, v in cost["option"].items())
        )
        print(f"  {cost['format']:5} {option:22} {cost['ms']:7.1f} ms {cost['bytes'] / 1024:8.0f} KiB")
    # The largest JPEG: its 1/2 decode is larger than the zoom, so both cases really resize.
    jpegs = [image for image in corpus if image.format == "jpeg"] or corpus
    resampler_source = max(jpegs, key=lambda image: image.megapixels)
    resamplers = resampler_costs(resampler_source.read(), args.repeat)
    print(
        f"\nResamplers on {resampler_source.label}, one resize each (CPU ms, best of {args.repeat}; SSIM against Pillow LANCZOS):"
    )
    for row in resamplers:
        size = "{}×{} → {}×{}".format(*row["from"], *row["to"])
        print(f"  {row['case']:5} {size:22} {row['resampler']:40} {row['ms']:7.1f} ms  {row['ssim']:.4f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": info, "core": core, "rows": rows, "encoders": costs, "resamplers": resamplers},
            indent=1,
        )
    )
    print(f"\nAll figures: {RESULTS.relative_to(ROOT)}")


def summarise_real(rows: list[dict]) -> None:
    """The targets of issue 12 over the real photos: sharp everywhere, faster than libvips overall."""
    if not rows:
        return
    ratios = [row["vs_libvips"] for row in rows]
    worst = min(rows, key=lambda row: row["vs_libvips"])
    blurriest = min(rows, key=lambda row: row["ssim"]["pixelmill"])
    geomean = statistics.geometric_mean(ratios)
    print("\nReal photos (issue 12):")
    print(f"  geometric mean ×libvips {geomean:6.3f}  (≥ 1.1: {'met' if geomean >= 1.1 else 'MISSED'})")
    print(
        f"  least ×libvips          {worst['vs_libvips']:6.3f}  {worst['image']}, {worst['pack']} "
        f"(≥ 0.95: {'met' if worst['vs_libvips'] >= 0.95 else 'MISSED'})"
    )
    print(f"  geometric mean ×naive   {statistics.geometric_mean([row['vs_naive'] for row in rows]):6.3f}")
    kinds: dict[str, tuple[float, str]] = {}
    for row in rows:
        for name, score in row["ssim_outputs"].items():
            kind = name.removesuffix("-webp")  # a JPEG and WebP twin share their pixels
            kinds[kind] = min(kinds.get(kind, (2.0, "")), (score, row["image"]))
    for kind, (score, image) in sorted(kinds.items(), key=lambda item: item[1]):
        print(f"  least SSIM, {kind:16} {score:6.4f}  {image}")
    print(
        f"  least SSIM              {blurriest['ssim']['pixelmill']:6.4f}  {blurriest['image']}, "
        f"{blurriest['pack']} (≥ 0.99: {'met' if blurriest['ssim']['pixelmill'] >= 0.99 else 'MISSED'})"
    )


def summarise(rows: list[dict]) -> None:
    """The targets of issue 5, checked over the JPEG inputs (and memory over the 24 MP ones)."""
    jpeg = [row for row in rows if row["format"] == "jpeg"]
    if not jpeg:
        return
    checks = [
        ("≥ 2.5× naive Pillow (JPEG inputs)", min(r["vs_naive"] for r in jpeg), 2.5, "min"),
        ("≥ 1.1× libvips (JPEG inputs)", min(r["vs_libvips"] for r in jpeg), 1.1, "min"),
        ("≤ 1.3× the floor (JPEG inputs)", max(r["over_floor"] for r in jpeg), 1.3, "max"),
        ("SSIM ≥ 0.99 (every input)", min(r["ssim"]["pixelmill"] for r in rows), 0.99, "min"),
    ]
    big = [r for r in jpeg if r["megapixels"] >= 24 and not math.isnan(r["memory"]["pixelmill"]["peak_mb"])]
    if big:
        checks.append(
            ("peak ≤ 100 MB, 24 MP JPEG", max(r["memory"]["pixelmill"]["peak_mb"] for r in big), 100, "max")
        )
    print("\nTargets (worst case over the rows above):")
    for label, value, target, kind in checks:
        met = value >= target if kind == "min" else value <= target
        print(f"  {label:36} {value:8.3f}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
