"""`manage.py process`: import a folder, run real worker processes, summarise, export, exit non-zero on refusals."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.management import CommandError, call_command

from dashboard.models import Campaign
from tests.conftest import worker_environment
from tests.jobs.images import jpeg, photo, png, truncated

pytestmark = pytest.mark.integration


@pytest.mark.django_db(transaction=True)
def test_process_a_folder_end_to_end(tmp_path, ready_recipes, team, redis_conn, monkeypatch, capsys):
    for key, value in worker_environment().items():
        monkeypatch.setenv(key, value)  # the burst workers the command starts use the test database
    folder = tmp_path / "drop"
    (folder / "sub").mkdir(parents=True)
    for n in range(4):
        (folder / f"photo-{n}.jpg").write_bytes(jpeg(photo(320, 240, seed=n)))
    (folder / "sub" / "flat.png").write_bytes(png(photo(200, 200, seed=9)))
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
