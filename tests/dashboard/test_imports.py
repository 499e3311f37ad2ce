"""Imports: uploads and zip archives become source images, or refusals that name the file and the reason."""

from __future__ import annotations

import pytest

from dashboard.imports import import_uploads, sanitize_display_name
from tests.conftest import upload, zip_bytes
from tests.jobs.images import jpeg, photo, png, truncated


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\shoe.png", "shoe.png"),
        ("evil\x00name.jpg", "evilname.jpg"),
        ("bidi\u202egpj.exe.jpg", "bidigpj.exe.jpg"),
        ("", "image"),
        ("...", "image"),
    ],
)
def test_display_names_lose_paths_and_invisible_characters(raw, expected):
    assert sanitize_display_name(raw) == expected


def test_long_unicode_names_are_bounded_and_keep_their_extension():
    name = sanitize_display_name("é" * 300 + ".jpeg")
    assert name.endswith(".jpeg") and len(name) <= 130


def test_upload_accepts_images_refuses_corrupt_ones_and_skips_duplicates(campaign):
    good = jpeg(photo(64, 48, seed=1))
    report = import_uploads(
        campaign,
        [
            upload("a.jpg", good),
            upload("b.png", png(photo(64, 48, seed=2))),
            upload("again.jpg", good),
            upload("broken.jpg", truncated(jpeg(photo(64, 48, seed=3)))),
            upload("notes.jpg", b"just some text, not a picture"),
        ],
    )
    assert [s.display_name for s in report.accepted] == ["a.jpg", "b.png"]
    assert report.duplicates == ["again.jpg"]
    refused = {r.name: r.reason for r in report.refused}
    assert set(refused) == {"broken.jpg", "notes.jpg"}
    assert all(reason for reason in refused.values())
    source = report.accepted[0]
    assert (source.width, source.height, source.format) == (64, 48, "JPEG")
    assert source.file.name.startswith(f"sources/c{campaign.pk}/") and source.sha256 in source.file.name


def test_zip_members_are_imported_and_unsafe_members_refused(campaign):
    archive = zip_bytes(
        {
            "shoes/one.jpg": jpeg(photo(40, 30, seed=4)),
            "two.png": png(photo(40, 30, seed=5)),
            "../escape.jpg": jpeg(photo(40, 30, seed=6)),
            "inner.zip": zip_bytes({"x.jpg": jpeg(photo(40, 30, seed=7))}),
            "readme.txt": b"hello",
        }
    )
    report = import_uploads(campaign, [upload("batch.zip", archive)])
    assert sorted(s.display_name for s in report.accepted) == ["one.jpg", "two.png"]
    assert all(s.origin == "upload" for s in report.accepted)
    reasons = {r.name: r.reason for r in report.refused}
    assert "unsafe path" in reasons["batch.zip/escape.jpg"]
    assert "archive inside the archive" in reasons["batch.zip/inner.zip"]
    assert "readme.txt" in reasons


def test_a_file_that_is_not_a_zip_is_refused_by_name(campaign):
    report = import_uploads(campaign, [upload("photos.zip", b"PK\x03\x04 nope")])
    assert report.refused[0].name == "photos.zip"
    assert "zip" in report.refused[0].reason
