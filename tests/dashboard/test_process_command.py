"""`manage.py process`: import a folder, run real worker processes, summarise, export, exit non-zero on refusals."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from dashboard.models import Campaign
from tests.conftest import worker_environment
from tests.jobs.images import jpeg, photo, png, product_on_white, truncated

pytestmark = pytest.mark.integration


@pytest.mark.django_db(transaction=True)
def test_process_a_folder_end_to_end(tmp_path, ready_recipes, team, redis_conn, monkeypatch, capsys):
    for key, value in worker_environment().items():
        monkeypatch.setenv(key, value)  # the burst workers the command starts use the test database
    folder = tmp_path / "drop"
    (folder / "sub").mkdir(parents=True)
    for n in range(4):
        # Large enough for every output of the social pack (a 1080×1920 story is at most a 4× enlargement).
        (folder / f"photo-{n}.jpg").write_bytes(jpeg(photo(640, 480, seed=n)))
    (folder / "sub" / "flat.png").write_bytes(png(photo(500, 500, seed=9)))
    (folder / "broken.jpg").write_bytes(truncated(jpeg(photo(320, 240, seed=7))))
    export = tmp_path / "out.zip"

    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "process",
            str(folder),
            recipe=["social-ads-pack"],
            campaign="Drop",
            wait=True,
            export=export,
            workers=2,
        )
    assert exit_info.value.code == 1  # one file was refused
    out, err = capsys.readouterr()
    assert "refused broken.jpg" in err
    assert "Succeeded 5, failed 0, dead 0 of 5 task(s)" in out
    assert "tasks/s" in out

    campaign = Campaign.objects.get(name="Drop")
    assert set(campaign.tasks.values_list("state", flat=True)) == {"succeeded"}
    with zipfile.ZipFile(io.BytesIO(export.read_bytes())) as archive:
        names = archive.namelist()
    assert "social-ads-pack/instagram-story/flat.jpg" in names
    assert len(names) == 5 * 5 + 1


def test_unknown_recipe_is_a_clear_error(tmp_path, ready_recipes):
    with pytest.raises(CommandError, match="Unknown recipe nope. Available: "):
        call_command("process", str(tmp_path), recipe=["nope"])


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so Django colours what the command writes to it."""

    def isatty(self) -> bool:
        return True


RED = "\x1b[31"


def progress_line(counts: dict[str, int]) -> str:
    from dashboard.management.commands.process import Command
    from dashboard.models import Progress

    terminal = Terminal()
    Command(stdout=io.StringIO(), stderr=terminal, force_color=True).draw(Progress(counts, 0, 3, 60.0))
    return terminal.getvalue()


def test_the_progress_line_is_neutral_until_something_fails_and_uses_the_summarys_words():
    line = progress_line({"succeeded": 3, "queued": 5})
    assert "\x1b[" not in line  # no colour at all while all is well
    assert "3/8 37%" in line and "0 failed · 0 dead" in line
    assert "0.05 tasks/s" in line and "img/s" not in line  # tasks finished per second, named so

    line = progress_line({"succeeded": 2, "dead": 8})
    assert line.startswith("\r[")  # the bar itself stays uncoloured
    assert "0 failed · " in line and f"{RED};1m8 dead" in line  # only the count that is not zero is red
    assert line.count(RED) == 1


def make_cutout_recipe():
    from dashboard.models import Recipe

    recipe = Recipe.objects.create(name="Cut-outs", slug="cut-outs")
    recipe.steps.create(position=1, operation="remove_background", params={})  # refuses busy photos
    recipe.outputs.create(position=1, name="square", width=120, height=120, fit="pad", format="png")
    recipe.publish_version()
    return recipe


@pytest.mark.django_db(transaction=True)
def test_json_gives_scripts_the_counts_durations_output_files_and_failures(
    tmp_path, team, redis_conn, monkeypatch, capsys
):
    for key, value in worker_environment().items():
        monkeypatch.setenv(key, value)
    make_cutout_recipe()
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "bottle.jpg").write_bytes(jpeg(product_on_white(320, 240, seed=1)))
    # No plain backdrop to remove: refused for good, so the task fails (needing a person) without retries.
    (folder / "street.jpg").write_bytes(jpeg(photo(320, 240, seed=2)))
    (folder / "broken.jpg").write_bytes(truncated(jpeg(photo(320, 240, seed=7))))

    with pytest.raises(SystemExit) as exit_info:
        call_command("process", str(folder), recipe=["cut-outs"], wait=True, workers=1, json=True)
    out, err = capsys.readouterr()
    summary = json.loads(out)  # stdout is the JSON alone; the words went to stderr
    assert exit_info.value.code == summary["exit_code"] == 1
    assert "Imported 2 image(s)" in err and "Succeeded 1, failed 1, dead 0 of 2 task(s)" in err

    campaign = Campaign.objects.get(name="drop")
    assert summary["campaign"] == {"id": campaign.pk, "name": "drop"}
    assert summary["images"] == {
        "imported": 2,
        "already_there": 0,
        "refused": [{"name": "broken.jpg", "reason": summary["images"]["refused"][0]["reason"]}],
    }
    assert summary["tasks"] == {
        "total": 2, "enqueued_now": 2, "succeeded": 1, "failed": 1, "dead": 0, "unfinished": 0,
    }  # fmt: skip
    assert summary["finished"] is True
    assert (
        summary["seconds"]["processing"] > 0
        and summary["seconds"]["total"] >= summary["seconds"]["processing"]
    )
    assert summary["tasks_per_second"] > 0 and summary["images_per_second"] > 0
    [output] = summary["outputs"]
    assert output["image"] == "bottle.jpg" and output["name"] == "square" and output["recipe"] == "cut-outs"
    assert Path(output["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output["bytes"] == Path(output["path"]).stat().st_size
    [failure] = summary["failures"]
    assert failure["image"] == "street.jpg" and failure["state"] == "failed"
    assert failure["step"] == "remove_background" and failure["message"]
    assert summary["export"] is None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_with_a_bucket_the_workers_write_there_and_the_export_streams_from_it(
    tmp_path, team, redis_conn, monkeypatch, capsys, s3_bucket
):
    for key, value in {**worker_environment(), **s3_bucket.environment}.items():
        monkeypatch.setenv(key, value)
    make_cutout_recipe()
    folder = tmp_path / "drop"
    folder.mkdir()
    for n in range(2):
        (folder / f"bottle-{n}.jpg").write_bytes(jpeg(product_on_white(320, 240, seed=n)))
    export = tmp_path / "drop.zip"

    call_command("process", str(folder), recipe=["cut-outs"], export=export, workers=1, json=True)
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"]["succeeded"] == 2
    objects = s3_bucket.objects()
    for output in summary["outputs"]:
        assert output["path"] is None, "no local file to point at"
        assert objects[output["file"]] == output["bytes"]
    with zipfile.ZipFile(export) as archive:
        assert sorted(archive.read(name) for name in archive.namelist() if name != "manifest.csv") == sorted(
            s3_bucket.read(output["file"]) for output in summary["outputs"]
        )
