"""Every ready recipe on every corpus photo on one HTML page (make contact-sheet): outputs, sizes, bytes, refusals."""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from corpus.build import default_cache_dir, load_manifest

THUMB_HEIGHT = 150
KINDS = ("succeeded", "kept whole", "partly made", "refused", "crashed")
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Shown:
    """One output as the page shows it: the full file, its thumbnail, and what a marketer checks."""

    name: str
    file: str
    thumb: str
    size: tuple[int, int]
    box: tuple[int, int]
    fit: str
    format: str
    bytes: int
    quality: int | None
    problems: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One recipe on one photo."""

    recipe: str
    kind: str
    message: str = ""
    seconds: float = 0.0
    outputs: list[Shown] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/contact-sheet"))
    parser.add_argument("--recipes", default="", help="comma-separated slugs (default: every ready recipe)")
    parser.add_argument("--photos", default="", help="comma-separated corpus ids (default: all)")
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of the top of the page here")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from dashboard.ready_recipes import READY_RECIPES

    cache = default_cache_dir()
    manifest = load_manifest(cache)
    if manifest is None:
        print(f"No real-photo corpus in {cache}: build it with `make corpus`.", file=sys.stderr)
        return 1
    recipes = [
        recipe for recipe in READY_RECIPES if not args.recipes or recipe["slug"] in args.recipes.split(",")
    ]
    photos = [
        photo for photo in manifest["photos"] if not args.photos or photo["id"] in args.photos.split(",")
    ]
    if not recipes or not photos:
        print("Nothing to render: check --recipes and --photos.", file=sys.stderr)
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    sheet = []
    for photo in photos:
        path = cache / photo["file"]
        source = show_source(path, args.out)
        rows = [render_recipe(path, photo["id"], recipe, args.out) for recipe in recipes]
        sheet.append((photo, source, rows))
        print(f"{photo['id']:20} " + "  ".join(f"{row.recipe}: {row.kind}" for row in rows), flush=True)

    (args.out / "index.html").write_text(page(sheet, recipes))
    (args.out / "summary.json").write_text(json.dumps(summary(sheet), indent=2))
    print(f"Contact sheet: {(args.out / 'index.html').resolve()}")
    if args.screenshot:
        take_screenshot(args.out / "index.html", args.screenshot)
        print(f"Screenshot: {args.screenshot}")
    return 0


def show_source(path: Path, out: Path) -> dict:
    """A thumbnail of the source as decoded (upright, sRGB), and what the file is."""
    from jobs.imaging import decode_image, register_heif

    register_heif()
    data = path.read_bytes()
    with Image.open(path) as stored:
        kind, (width, height) = stored.format or path.suffix, stored.size
        # EXIF orientations 5 to 8 turn the picture a quarter: the upright photo is the other way round.
        upright = (height, width) if stored.getexif().get(0x0112) in (5, 6, 7, 8) else (width, height)
    image = decode_image(data, min_size=(THUMB_HEIGHT * 4, THUMB_HEIGHT * 4))
    thumb = out / "sources" / f"{path.stem}.png"
    thumb.parent.mkdir(parents=True, exist_ok=True)
    save_thumbnail(image, thumb)
    return {
        "thumb": thumb.relative_to(out).as_posix(),
        "size": (width, height),
        "upright": upright,
        "bytes": len(data),
        "kind": kind,
    }


def kind_of(notes: list[dict[str, str]]) -> str:
    """What a run that raised nothing did, by the notes it left: a photo kept whole is that first."""
    from jobs.operations import KEPT_WHOLE, NOT_MADE

    codes = {note["code"] for note in notes}
    return "kept whole" if KEPT_WHOLE in codes else "partly made" if NOT_MADE in codes else "succeeded"


def render_recipe(path: Path, photo_id: str, recipe: dict, out: Path) -> Row:
    """Run the recipe the way a worker does (run_pipeline) and keep every output and its thumbnail."""
    from dashboard.ready_recipes import ready_pipeline
    from jobs.errors import PermanentError
    from jobs.rendering import run_pipeline

    steps, specs = ready_pipeline(recipe["slug"])
    started = time.perf_counter()
    try:
        result = run_pipeline(path.read_bytes(), steps, specs)
    except PermanentError as error:
        return Row(recipe["slug"], "refused", error.message, time.perf_counter() - started)
    except Exception as error:  # the sheet shows crashes too: they are what it is for
        return Row(
            recipe["slug"], "crashed", f"{type(error).__name__}: {error}", time.perf_counter() - started
        )
    seconds = time.perf_counter() - started
    row = Row(
        recipe["slug"], kind_of(result.notes), "; ".join(note["message"] for note in result.notes), seconds
    )
    folder = out / recipe["slug"] / photo_id
    folder.mkdir(parents=True, exist_ok=True)
    for output in result.outputs:
        spec = output.spec
        file = folder / f"{spec.name}.{spec.extension}"
        file.write_bytes(output.data)
        thumb = out / "thumbs" / recipe["slug"] / photo_id / f"{spec.name}.png"
        thumb.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(file) as image:
            save_thumbnail(image, thumb)
        problems = [violation.message for violation in output.violations]
        if spec.fit in ("fill", "pad") and (output.width, output.height) != (spec.width, spec.height):
            problems.append(f"asked for {spec.width}×{spec.height}")
        row.outputs.append(
            Shown(
                name=spec.name,
                file=file.relative_to(out).as_posix(),
                thumb=thumb.relative_to(out).as_posix(),
                size=(output.width, output.height),
                box=(spec.width, spec.height),
                fit=spec.fit,
                format=spec.format,
                bytes=len(output.data),
                quality=output.quality,
                problems=problems,
            )
        )
    return row


def save_thumbnail(image: Image.Image, path: Path) -> None:
    """THUMB_HEIGHT tall (never enlarged beyond twice), PNG so transparency shows on the page's chequerboard."""
    image.load()
    scale = min(2.0, THUMB_HEIGHT / image.height, 4 * THUMB_HEIGHT / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    picture = image.convert("RGBA" if image.mode in ("RGBA", "LA", "PA", "P") else "RGB")
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    picture.resize(size, resample).save(path, optimize=True)


def summary(sheet: list) -> dict:
    """{recipe: {kind: count, "reasons": {message: [photo ids]}}}: what the closing note quotes."""
    result: dict[str, dict] = {}
    for photo, _, rows in sheet:
        for row in rows:
            entry = result.setdefault(row.recipe, {kind: 0 for kind in KINDS} | {"reasons": {}})
            entry[row.kind] += 1
            if row.kind != "succeeded":
                entry["reasons"].setdefault(f"{row.kind}: {row.message}", []).append(photo["id"])
    return result


def kilobytes(count: int) -> str:
    return f"{count / 1024:.0f} KB" if count >= 10 * 1024 else f"{count / 1024:.1f} KB"


def page(sheet: list, recipes: list[dict]) -> str:
    esc = html.escape
    names = {recipe["slug"]: recipe["name"] for recipe in recipes}
    totals = summary(sheet)
    head = "".join(f"<th>{esc(kind)}</th>" for kind in KINDS)
    body = "".join(
        f"<tr><td>{esc(names[slug])}</td>"
        + "".join(f"<td>{totals[slug][kind]}</td>" for kind in KINDS)
        + "</tr>"
        for slug in totals
    )
    parts = [
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pixelmill contact sheet</title>
<style>{STYLE}</style></head><body>
<h1>Contact sheet: {len(recipes)} ready recipes on {len(sheet)} real photos</h1>
<p class="lead">Each source (decoded: upright, in sRGB) beside every output of every ready recipe, with its size and
bytes; refusals give the reason a marketer would read. Click a thumbnail for the full output.</p>
<table class="totals"><tr><th>recipe</th>{head}</tr>{body}</table>"""
    ]
    for photo, source, rows in sheet:
        tags = ", ".join(photo.get("tags", []))
        width, height = source["size"]
        parts.append(
            f"""<section id="{esc(photo["id"])}"><div class="source"><a href="{esc(source["thumb"])}">
<img src="{esc(source["thumb"])}" alt="{esc(photo["id"])}"></a>
<div class="caption"><b>{esc(photo["id"])}</b><br>{width}×{height} {esc(source["kind"])}, {kilobytes(source["bytes"])}
<br><span class="tags">{esc(tags)}</span></div></div><div class="rows">"""
        )
        for row in rows:
            parts.append(
                f'<div class="row {row.kind.replace(" ", "-")}"><div class="recipe">{esc(names[row.recipe])}'
            )
            parts.append(f'<br><span class="kind">{esc(row.kind)}</span> · {row.seconds * 1000:.0f} ms</div>')
            if row.kind in ("refused", "crashed"):
                parts.append(f'<div class="reason">{esc(row.message)}</div></div>')
                continue
            if row.message:
                parts.append(f'<div class="note">{esc(row.message)}</div>')
            for shown in row.outputs:
                size = f"{shown.size[0]}×{shown.size[1]}"
                quality = f" q{shown.quality}" if shown.quality else ""
                problems = "".join(
                    f'<br><span class="problem">{esc(problem)}</span>' for problem in shown.problems
                )
                parts.append(
                    f'<figure><a href="{esc(shown.file)}"><img src="{esc(shown.thumb)}" alt="{esc(shown.name)}"></a>'
                    f"<figcaption><b>{esc(shown.name)}</b> {shown.fit}<br>{size} {shown.format}{quality}, "
                    f"{kilobytes(shown.bytes)}{problems}</figcaption></figure>"
                )
            parts.append("</div>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


STYLE = """
body { font: 13px/1.35 system-ui, sans-serif; margin: 16px; color: #1d2330; background: #f4f5f7; }
h1 { font-size: 20px; margin: 0 0 4px; } .lead { margin: 0 0 10px; color: #4a5262; max-width: 70em; }
table.totals { border-collapse: collapse; margin-bottom: 14px; background: #fff; }
.totals th, .totals td { border: 1px solid #d5d9e0; padding: 3px 10px; text-align: right; }
.totals td:first-child, .totals th:first-child { text-align: left; }
section { display: flex; gap: 12px; background: #fff; border: 1px solid #d5d9e0; border-radius: 6px;
  padding: 10px; margin-bottom: 12px; }
.source { flex: 0 0 170px; } .source img { max-width: 170px; max-height: 150px; }
.tags { color: #6b7385; } .rows { flex: 1; min-width: 0; }
.row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 8px; padding: 6px 0;
  border-top: 1px solid #eceef2; }
.row:first-child { border-top: 0; } .recipe { flex: 0 0 120px; font-weight: 600; }
.kind { font-weight: 400; color: #4a5262; } .refused .kind { color: #a15c00; } .crashed .kind { color: #c0262d; }
.reason { flex: 1; padding: 6px 8px; border-radius: 4px; background: #fff4e0; max-width: 60em; }
.crashed .reason { background: #fde7e8; } .note { flex: 1 0 100%; color: #a15c00; }
figure { margin: 0; } figure img { max-height: 150px; max-width: 600px; display: block; border: 1px solid #d5d9e0;
  background: repeating-conic-gradient(#e6e8ec 0 25%, #fff 0 50%) 0 0 / 16px 16px; }
figcaption { font-size: 12px; color: #4a5262; max-width: 260px; } .problem { color: #c0262d; }
"""


def take_screenshot(index: Path, target: Path) -> None:
    """The top of the sheet in headless Chromium, as docs/screenshots keeps it: readable, not the whole page."""
    from playwright.sync_api import sync_playwright

    target.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 960})
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        shot = page.screenshot()
        browser.close()
    # 256 colours keep a page of photos legible at a third of the bytes: it is committed to the repo.
    with Image.open(io.BytesIO(shot)) as picture:
        picture.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
