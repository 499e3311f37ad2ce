"""Intake: uploads and zip archives become source images, or refusals that name the file and the reason."""

from __future__ import annotations

import pytest

from dashboard.intake import import_uploads, sanitize_display_name
from tests.factories import upload, zip_bytes
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


def zip_with(build) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        build(archive)
    return buffer.getvalue()


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(campaign):
    archive = zip_with(lambda z: z.writestr("bomb.jpg", b"\0" * 50_000_000))
    assert len(archive) < 100_000  # 50 MB of zeros squeezed into a few kilobytes
    report = import_uploads(campaign, [upload("bomb.zip", archive)])
    assert "compression ratio" in report.refused[0].reason
    assert campaign.sources.count() == 0


def test_symlink_and_encrypted_members_are_refused(campaign):
    import zipfile

    def build(archive):
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")
        archive.writestr("ok.jpg", jpeg(photo(30, 30, seed=11)))

    data = bytearray(zip_with(build))
    report = import_uploads(campaign, [upload("mixed.zip", bytes(data))])
    assert {r.name: r.reason for r in report.refused} == {"mixed.zip/link.jpg": "is a symbolic link"}
    assert [s.display_name for s in report.accepted] == ["ok.jpg"]

    # Mark the member encrypted (general purpose flag bit 0) in both headers.
    encrypted = zip_with(lambda z: z.writestr("secret.jpg", jpeg(photo(30, 30, seed=12))))
    encrypted = bytearray(encrypted)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = encrypted.find(signature)
        encrypted[at + offset] |= 0x1
    report = import_uploads(campaign, [upload("locked.zip", bytes(encrypted))])
    assert report.refused[0].reason == "is encrypted"


def test_zip_caps_on_member_count_and_total_size(campaign, settings):
    settings.PIXELMILL_ZIP_MAX_MEMBERS = 2
    archive = zip_with(lambda z: [z.writestr(f"{n}.jpg", jpeg(photo(20, 20, seed=n))) for n in range(3)])
    report = import_uploads(campaign, [upload("many.zip", archive)])
    assert "at most 2" in report.refused[0].reason and not report.accepted

    settings.PIXELMILL_ZIP_MAX_MEMBERS = 100
    settings.PIXELMILL_ZIP_MAX_TOTAL_BYTES = 1500
    archive = zip_with(lambda z: [z.writestr(f"{n}.png", png(photo(30, 30, seed=n))) for n in range(5)])
    report = import_uploads(campaign, [upload("big.zip", archive)])
    assert "total size limit" in report.refused[-1].reason
    assert len(report.accepted) < 5
