"""In Chromium: log in, create a campaign, upload files and a zip, process, watch 100%, download the ZIP."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from tests.conftest import start_worker_process
from tests.factories import zip_bytes
from tests.jobs.images import jpeg, product_on_white

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def workers(live_server, redis_conn):
    processes = [start_worker_process(burst=False) for _ in range(2)]
    yield processes
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(20)


def test_marketer_uploads_processes_and_downloads(
    browser_page, workers, live_server, marketer, ready_recipes, tmp_path
):
    page = browser_page
    # Products large enough for the 2000×2000 zoom without enlarging the cut-out past 4×.
    files = []
    for n in range(3):
        path = tmp_path / f"product-{n}.jpg"
        path.write_bytes(jpeg(product_on_white(960, 720, seed=n, centre=(0.4 + 0.1 * n, 0.55))))
        files.append(path)
    archive = tmp_path / "more-products.zip"
    archive.write_bytes(
        zip_bytes({f"zip-{n}.jpg": jpeg(product_on_white(960, 720, seed=10 + n)) for n in range(2)})
    )
    files.append(archive)

    page.goto(live_server.url)
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "maria")
    page.fill("input[name=password]", "pw-maria-123")
    page.click("button[type=submit]")

    page.fill("input[name=name]", "Summer catalogue")
    page.click("text=Create campaign")
    page.wait_for_selector("h1:has-text('Summer catalogue')")

    page.set_input_files("#file-input", [str(f) for f in files])
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=Added 5 image(s).")

    page.check(f"input[name=recipes][value='{ready_recipes['ecommerce-pack'].pk}']")
    page.check(f"input[name=recipes][value='{ready_recipes['sale-banner'].pk}']")
    page.click("#process-button")
    page.wait_for_selector("text=Processing 10 task(s).")
    # The progress panel polls and the page reloads itself when the run is finished.
    page.wait_for_selector("#progress[data-finished=true]", timeout=120_000)
    assert page.inner_text("#progress .percent") == "100%"
    assert page.locator(".task.succeeded").count() == 10
    assert page.locator(".badge.to-review").count() == 10  # each result waits for a decision

    with page.expect_download() as download_info:
        page.click("text=Download ZIP")
    saved = tmp_path / "campaign.zip"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(saved) as result:
        names = result.namelist()
        assert "manifest.csv" in names
        assert len([n for n in names if n.startswith("ecommerce-pack/")]) == 5 * 6
        assert len([n for n in names if n.startswith("sale-banner/")]) == 5 * 4
        assert "sale-banner/banner/zip-0.jpg" in names
        from PIL import Image

        assert Image.open(io.BytesIO(result.read("ecommerce-pack/zoom/product-1.jpg"))).size == (2000, 2000)
    shutil.rmtree(tmp_path, ignore_errors=True)
