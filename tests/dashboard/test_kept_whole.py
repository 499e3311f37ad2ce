"""The E-commerce pack keeps a photo that cannot be cut out whole, and the gallery says which and why."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.dashboard.pages import find_all, visible_text
from tests.jobs.images import jpeg, photo, product_on_white

BADGE = "Kept whole — background not removed"


@pytest.fixture
def mixed_campaign(processed):
    """A product shot and a busy photo through the ready E-commerce pack on a real RQ worker."""
    files = {"bottle.jpg": jpeg(product_on_white(320, 240, seed=1)), "street.jpg": jpeg(photo(320, 240))}
    return processed("ecommerce-pack", files)


def test_a_busy_photo_succeeds_whole_on_white_with_the_note_stored(mixed_campaign):
    street = mixed_campaign.tasks.get(source__display_name="street.jpg")
    bottle = mixed_campaign.tasks.get(source__display_name="bottle.jpg")
    assert (street.state, bottle.state) == ("succeeded", "succeeded")
    assert [note["code"] for note in street.notes if note["code"] != "not_made"] == ["kept_whole"]
    assert "plain or studio backdrop" in street.kept_whole_reason()
    assert bottle.kept_whole_reason() == ""
    # The canvas step placed the whole photo, centred with its margin, on the white square.
    output = street.outputs.get(name="product")
    with output.file.open("rb") as handle:
        square = np.asarray(Image.open(io.BytesIO(handle.read())).convert("RGB"), dtype=np.int16)
    assert square.shape == (800, 800, 3)
    assert (square[:40] > 245).all()  # the margin above the 4:3 photo is white
    assert square[300:500, 100:700].std() > 20  # the photo itself, not an empty square


def test_the_gallery_marks_the_photo_kept_whole_and_says_why(mixed_campaign, marketer_client):
    page = marketer_client.get(mixed_campaign.get_absolute_url()).content.decode()
    assert visible_text(page).count(BADGE) == 1
    [badge] = [badge for badge in find_all(page, class_="badge") if badge.text == BADGE]
    assert "plain or studio backdrop" in badge.attrs["title"]
    assert "The whole photo was used instead." in badge.attrs["title"]
