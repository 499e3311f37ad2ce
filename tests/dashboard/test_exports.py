"""The campaign ZIP: approved outputs only on request, and a re-run campaign's versions never share a path."""

from __future__ import annotations

import csv
import io
import zipfile

from django.test import Client
from django.urls import reverse

from dashboard.exports import campaign_zip
from dashboard.models import Output, ShareLink, Task
from tests.conftest import run_burst_worker
from tests.dashboard.conftest import process_uploads, publish_banner_text
from tests.factories import make_task
from tests.jobs.images import jpeg, product_on_white


def read_zip(archive) -> tuple[set[str], list[dict]]:
    result = zipfile.ZipFile(io.BytesIO(b"".join(archive)))
    rows = list(csv.DictReader(io.StringIO(result.read("manifest.csv").decode())))
    return set(result.namelist()) - {"manifest.csv"}, rows


def test_the_approved_zip_holds_only_approved_outputs_and_no_failures(banner_campaign, ready_recipes):
    make_task(
        banner_campaign,
        ready_recipes["sale-banner"],
        sha="f" * 64,
        state=Task.State.FAILED,
        error_message="broken",
    )
    Output.objects.filter(
        task__source__display_name="shoe.jpg", name__startswith="banner-small"
    ).record_review("approved", None)
    Output.objects.filter(task__source__display_name="bag.jpg", name="banner").record_review("rejected", None)
    names, rows = read_zip(campaign_zip(banner_campaign, approved_only=True))
    assert names == {"sale-banner/banner-small/shoe.jpg", "sale-banner/banner-small-webp/shoe.webp"}
    assert [row["review"] for row in rows] == ["approved", "approved"]

    everything, rows = read_zip(campaign_zip(banner_campaign))
    assert len(everything) == 8 and len(rows) == 9  # the failed image is accounted for
    assert {row["review"] for row in rows} == {"approved", "rejected", "pending", ""}


def test_the_download_button_offers_the_approved_zip(banner_campaign, marketer_client):
    Output.objects.filter(name="banner").record_review("approved", None)
    response = marketer_client.get(reverse("campaign-download", args=[banner_campaign.pk]), {"approved": "1"})
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="{banner_campaign.archive_name("-approved")}"'
    )
    names, _ = read_zip(response.streaming_content)
    assert names == {"sale-banner/banner/shoe.jpg", "sale-banner/banner/bag.jpg"}


def test_a_rerun_campaign_keeps_the_newest_version_under_the_plain_name(
    banner_campaign, marketer_client, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    recipe = ready_recipes["sale-banner"]
    publish_banner_text(recipe, "30% OFF")
    with django_capture_on_commit_callbacks(execute=True):
        marketer_client.post(reverse("campaign-rerun", args=[banner_campaign.pk, recipe.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        run_burst_worker()
    names, rows = read_zip(campaign_zip(banner_campaign))
    assert len(names) == len(rows) == 16
    assert {"sale-banner/banner/shoe.jpg", "sale-banner/banner/shoe-v1.jpg"} <= names
    versions = {row["path"]: row["recipe_version"] for row in rows}
    assert (
        versions["sale-banner/banner/shoe.jpg"] == "2" and versions["sale-banner/banner/shoe-v1.jpg"] == "1"
    )
    # Approving only the old version's banner gives it the plain name again.
    Output.objects.filter(task__recipe_version__number=1, name="banner").record_review("approved", None)
    names, _ = read_zip(campaign_zip(banner_campaign, approved_only=True))
    assert names == {"sale-banner/banner/shoe.jpg", "sale-banner/banner/bag.jpg"}


FORMULA_NAMES = ["=HYPERLINK(evil.example,Open).jpg", "+SUM(1,2).png", "@SUM(A1).jpg", "-2+3.png"]


def test_file_names_that_look_like_formulas_reach_both_manifests_as_text(
    marketer_client, campaign, ready_recipes, redis_conn, django_capture_on_commit_callbacks
):
    """A cell starting with = + - @ (or a tab or CR) is prefixed with ' (OWASP's advice), so a spreadsheet
    shows the name instead of running it, in the team's ZIP and in the one a share link hands out."""
    files = {name: jpeg(product_on_white(400 + 20 * n, 320, seed=n)) for n, name in enumerate(FORMULA_NAMES)}
    process_uploads(
        marketer_client, campaign, [ready_recipes["sale-banner"]], files, django_capture_on_commit_callbacks
    )
    make_task(
        campaign,
        ready_recipes["sale-banner"],
        sha="e" * 64,
        state=Task.State.FAILED,
        error_message="-1 bytes",
    )
    Output.objects.filter(task__campaign=campaign, name="banner").record_review("approved", None)

    full = marketer_client.get(reverse("campaign-download", args=[campaign.pk]))
    names, rows = read_zip(full.streaming_content)
    link = ShareLink.issue(campaign, campaign.created_by, days=1)
    shared = Client().get(reverse("share-link-download", args=[link.token]))
    shared_names, shared_rows = read_zip(shared.streaming_content)

    for archive, manifest in ((names, rows), (shared_names, shared_rows)):
        assert {row["source"] for row in manifest if row["path"]} == {f"'{name}" for name in FORMULA_NAMES}
        # No cell of the manifest starts a formula; the paths still name the files in the archive.
        cells = [value for row in manifest for value in row.values() if value]
        assert not [cell for cell in cells if cell[0] in "=+-@\t\r"]
        assert {row["path"] for row in manifest if row["path"]} == archive
    assert [row["error"] for row in rows if not row["path"]] == ["'-1 bytes"]  # the failure's reason too
    assert "sale-banner/banner/=HYPERLINK(evil.example,Open).jpg" in shared_names
