"""Intake: uploads and zip archives become source images, or refusals that name the file and the reason."""

from __future__ import annotations

import gc
import io
import tempfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from dashboard.intake import Duplicate, import_uploads, sanitize_display_name
from dashboard.models import DeferredUpload
from dashboard.upload_reader import UploadReader
from tests.factories import add_source, multipart_body, unpack_upload, upload, zip_bytes
from tests.jobs.images import jpeg, photo, png, png_header_only, truncated


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
    assert report.duplicates == [Duplicate("again.jpg", duplicate_of="a.jpg")]
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
    report = unpack_upload(campaign, "batch.zip", archive)
    assert sorted(s.display_name for s in report.accepted) == ["one.jpg", "two.png"]
    assert all(s.origin == "zip" for s in report.accepted)
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
    report = unpack_upload(campaign, "bomb.zip", archive)
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
    report = unpack_upload(campaign, "mixed.zip", bytes(data))
    assert {r.name: r.reason for r in report.refused} == {"mixed.zip/link.jpg": "is a symbolic link"}
    assert [s.display_name for s in report.accepted] == ["ok.jpg"]

    # Mark the member encrypted (general purpose flag bit 0) in both headers.
    encrypted = zip_with(lambda z: z.writestr("secret.jpg", jpeg(photo(30, 30, seed=12))))
    encrypted = bytearray(encrypted)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = encrypted.find(signature)
        encrypted[at + offset] |= 0x1
    report = unpack_upload(campaign, "locked.zip", bytes(encrypted))
    assert report.refused[0].reason == "is encrypted"


def test_zip_caps_on_member_count_and_total_size(campaign, settings):
    settings.PIXELMILL_ZIP_MAX_MEMBERS = 2
    archive = zip_with(lambda z: [z.writestr(f"{n}.jpg", jpeg(photo(20, 20, seed=n))) for n in range(3)])
    report = unpack_upload(campaign, "many.zip", archive)
    assert "at most 2" in report.refused[0].reason and not report.accepted

    settings.PIXELMILL_ZIP_MAX_MEMBERS = 100
    settings.PIXELMILL_ZIP_MAX_TOTAL_BYTES = 1500
    archive = zip_with(lambda z: [z.writestr(f"{n}.png", png(photo(30, 30, seed=n))) for n in range(5)])
    report = unpack_upload(campaign, "big.zip", archive)
    assert "total size limit" in report.refused[-1].reason
    assert len(report.accepted) < 5


def test_a_name_with_control_characters_is_refused_by_name(campaign):
    report = import_uploads(
        campaign,
        [
            upload("fine.jpg", jpeg(photo(40, 30, seed=1))),
            upload("bell\x07.jpg", jpeg(photo(40, 30, seed=2))),
        ],
    )
    assert [s.display_name for s in report.accepted] == ["fine.jpg"]
    [refusal] = report.refused
    assert refusal.name == "bell␇.jpg"  # shown with the control character's visible symbol
    assert "control characters" in refusal.reason


# Through the upload page's endpoint, as the page's script sends it (JSON back) or as a script would.


def post_upload(client, campaign, files=None, *, parts=None, **headers):
    """POST to the upload endpoint asking for JSON: Django's test client encoding of `files`, or `parts`
    written byte for byte (tests.factories.multipart_body)."""
    url = reverse("campaign-upload", args=[campaign.pk])
    headers = {"accept": "application/json", **headers}
    if parts is None:
        return client.post(url, {"files": files}, headers=headers)
    body, content_type = multipart_body(parts)
    return client.post(url, body, content_type=content_type, headers=headers)


def refused_rows(response) -> dict[str, str]:
    return {row["name"]: row["reason"] for row in response.json()["refused"]}


def test_one_empty_file_among_nineteen_is_refused_by_name_and_the_other_eighteen_are_imported(
    marketer_client, campaign
):
    files = [upload(f"photo-{n:02}.jpg", jpeg(photo(48, 32, seed=n))) for n in range(18)]
    files.insert(7, upload("empty.jpg", b""))
    response = post_upload(marketer_client, campaign, files)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    result = response.json()
    assert sorted(row["name"] for row in result["accepted"]) == [f"photo-{n:02}.jpg" for n in range(18)]
    assert refused_rows(response) == {"empty.jpg": "is empty (0 bytes)"}
    assert campaign.sources.count() == 18


def test_an_upload_without_a_files_field_gets_a_clear_error(marketer_client, campaign):
    response = post_upload(marketer_client, campaign, parts=[("note", None, b"hello")])
    assert response.status_code == 400
    assert "Choose at least one image" in response.json()["error"]
    # The form without the page's script: the same message on the page it comes back to.
    url = reverse("campaign-upload", args=[campaign.pk])
    page = marketer_client.post(url, {"note": "hello"}, follow=True).content.decode()
    assert "Choose at least one image" in page


def test_an_unnamed_empty_part_is_a_form_with_no_file_chosen_not_a_refusal(marketer_client, campaign):
    """Browsers send a file field left empty as a part with no name and no bytes."""
    response = post_upload(marketer_client, campaign, parts=[("files", "", b"")])
    assert response.status_code == 400 and "Choose at least one image" in response.json()["error"]
    response = post_upload(
        marketer_client, campaign, parts=[("files", "a.jpg", jpeg(photo(40, 30, seed=1))), ("files", "", b"")]
    )
    assert [row["name"] for row in response.json()["accepted"]] == ["a.jpg"]
    assert response.json()["refused"] == []


def test_each_file_with_no_usable_name_is_one_refused_row_and_the_rest_is_imported(marketer_client, campaign):
    picture = [jpeg(photo(40, 30, seed=n)) for n in range(8)]
    response = post_upload(
        marketer_client,
        campaign,
        parts=[
            ("csrfmiddlewaretoken", None, b"ignored-by-the-test-client"),
            ("files", "first.jpg", picture[0]),
            ("files", "", picture[1]),
            ("files", ".", picture[2]),
            ("files", "..", picture[3]),
            ("files", b"caf\xe9-latin1.jpg", picture[4]),  # Latin-1, not UTF-8
            ("files", "tab\there.jpg", picture[5]),
            ("files", "x" * 1500 + ".jpg", picture[6]),  # Django's parser answered the whole request 400
            ("files", "last.jpg", picture[7]),
        ],
    )
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["accepted"]] == ["first.jpg", "last.jpg"]
    refused = refused_rows(response)
    assert len(refused) == 6
    assert "has no file name" in refused["(no name)"]
    assert "no usable file name" in refused["."] and "no usable file name" in refused[".."]
    assert "not readable text" in refused["caf\ufffd-latin1.jpg"]
    assert "control characters" in refused["tab␉here.jpg"]
    [long_name] = [name for name in refused if name.startswith("xxxx")]
    assert len(long_name) < 100 and long_name.endswith("….jpg")
    assert "1504 characters" in refused[long_name] and "255" in refused[long_name]
    assert campaign.sources.count() == 2


def test_a_name_over_1_kb_alone_is_a_refused_row_in_json(marketer_client, campaign):
    response = post_upload(marketer_client, campaign, parts=[("files", "名" * 700 + ".jpg", b"\xff\xd8")])
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    [(name, reason)] = refused_rows(response).items()
    assert name.startswith("名名名") and "704 characters" in reason


def test_a_chunked_upload_without_a_length_gets_a_clear_error_not_an_empty_form(marketer_client, campaign):
    body, content_type = multipart_body([("files", "a.jpg", jpeg(photo(40, 30, seed=1)))])
    response = marketer_client.generic(
        "POST",
        reverse("campaign-upload", args=[campaign.pk]),
        body,
        content_type=content_type,
        headers={"accept": "application/json", "transfer-encoding": "chunked"},
        CONTENT_LENGTH="",
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]
    assert campaign.sources.count() == 0


def test_duplicates_name_the_image_already_in_the_campaign(marketer_client, campaign):
    shoe = jpeg(photo(40, 30, seed=1))
    post_upload(marketer_client, campaign, [upload("shoe.jpg", shoe)])
    bag = jpeg(photo(40, 30, seed=2))
    response = post_upload(
        marketer_client,
        campaign,
        [upload("shoe-copy.jpg", shoe), upload("bag.jpg", bag), upload("bag-again.jpg", bag)],
    )
    assert response.json()["duplicates"] == [
        {"name": "shoe-copy.jpg", "duplicate_of": "shoe.jpg"},
        {"name": "bag-again.jpg", "duplicate_of": "bag.jpg"},
    ]
    assert [row["name"] for row in response.json()["accepted"]] == ["bag.jpg"]


def test_files_over_the_in_memory_size_are_spooled_to_disk_and_imported_whole(
    marketer_client, campaign, settings
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1_000
    data = png(photo(120, 90, seed=3))
    assert len(data) > 10 * settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    response = post_upload(marketer_client, campaign, parts=[("files", "big.png", data)])
    assert [row["name"] for row in response.json()["accepted"]] == ["big.png"]
    source = campaign.sources.get()
    assert source.byte_size == len(data) and source.file.read() == data


# What a web request may hold: only what is cheap to check is decoded there; the body is spooled within bounds.


def test_only_what_is_cheap_to_check_is_decoded_in_the_request_the_rest_goes_to_a_worker(campaign, settings):
    settings.PIXELMILL_WEB_DECODE_MAX_PIXELS = 200_000
    large = png(photo(600, 400, seed=3))  # 240,000 pixels
    add_source(campaign, large, "held.png")
    grey = Image.new("RGB", (4000, 3000), (120, 120, 120))
    report = import_uploads(
        campaign,
        [
            upload("baseline.jpg", jpeg(grey)),  # 12 MP, checked at 1/8 scale: 500 × 375
            upload("progressive.jpg", jpeg(grey, progressive=True)),  # keeps every coefficient: 12 MP
            upload("poster.png", png(photo(600, 400, seed=4))),
            upload("small.png", png(photo(100, 50, seed=5))),
            upload("again.png", large),  # a duplicate is said at once, never decoded
            upload("bomb.png", png_header_only(65_535, 65_535)),  # refused from its header
            upload("notes.png", b"not a picture"),
            upload("shoot.zip", zip_bytes({"a.jpg": jpeg(photo(40, 30, seed=6))})),
        ],
    )
    assert [s.display_name for s in report.accepted] == ["baseline.jpg", "small.png"]
    assert report.duplicates == [Duplicate("again.png", duplicate_of="held.png")]
    assert {r.name for r in report.refused} == {"bomb.png", "notes.png"}
    assert [(u.name, u.kind) for u in report.checking] == [
        ("progressive.jpg", "image"), ("poster.png", "image"), ("shoot.zip", "archive"),
    ]  # fmt: skip
    for row in DeferredUpload.objects.all():
        assert row.state == "queued" and row.campaign == campaign
        assert default_storage.size(row.file.name) == row.byte_size
    assert report.as_dict()["counts"] == {"accepted": 2, "duplicates": 1, "refused": 2, "checking": 3}


def peak_growth(action) -> int:
    """How far the process's peak resident size rose above its size before while `action` ran, in bytes
    (Linux: VmHWM, reset to the current size through /proc/self/clear_refs)."""

    def status_kb(field: str) -> int:
        line = next(
            line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field)
        )
        return int(line.split()[1])

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kb("VmRSS:")
    action()
    return (status_kb("VmHWM:") - before) * 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_a_36_megapixel_png_upload_is_never_decoded_in_the_web_request(marketer_client, campaign):
    """Decoded, it would take 144 MB (four bytes a pixel); the request reads its header and stores it."""
    picture = Image.linear_gradient("L").resize((6000, 6000)).convert("RGB")
    data = png(picture, compress_level=1)
    del picture
    responses = []
    grew = peak_growth(
        lambda: responses.append(post_upload(marketer_client, campaign, [upload("poster.png", data)]))
    )
    assert responses[0].json()["checking"] == [
        {"name": "poster.png", "id": DeferredUpload.objects.get().pk, "kind": "image"}
    ]
    assert grew < 40 * 1024**2, f"the web process grew by {grew / 1024**2:.0f} MB"


def test_an_upload_keeps_at_most_its_memory_budget_of_files_in_memory(settings):
    """Each file up to FILE_UPLOAD_MAX_MEMORY_SIZE stayed in memory, so a thousand 2.4 MB files held 2.4 GB."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1_000
    settings.PIXELMILL_UPLOAD_MEMORY_BYTES = 3_000
    body, content_type = multipart_body([("files", f"{n}.jpg", bytes([n]) * 900) for n in range(10)])
    _, files = UploadReader().handle_raw_input(
        io.BytesIO(body), {}, len(body), content_type.partition("boundary=")[2]
    )
    uploads = files.getlist("files")
    in_memory = [
        f for f in uploads if isinstance(f.file, tempfile.SpooledTemporaryFile) and not f.file._rolled
    ]
    assert len(uploads) == 10 and len(in_memory) == 3
    assert [f.read() for f in uploads] == [bytes([n]) * 900 for n in range(10)]


def test_an_upload_over_1_gb_is_refused_before_it_is_read(marketer_client, campaign):
    """One request may spool at most 1 GB to the temporary folder (it was 4 GB)."""
    body, content_type = multipart_body([("files", "a.jpg", jpeg(photo(40, 30, seed=1)))])
    response = marketer_client.generic(
        "POST",
        reverse("campaign-upload", args=[campaign.pk]),
        body,
        content_type=content_type,
        headers={"accept": "application/json"},
        CONTENT_LENGTH=str(1024**3 + 1),
    )
    assert response.status_code == 413 and "at most 1.0\xa0GB" in response.json()["error"]


def test_a_zip_whose_directory_is_too_long_is_refused_before_the_directory_is_read(campaign, settings):
    """A directory of millions of empty entries would cost gigabytes as Python objects while it is read."""
    settings.PIXELMILL_ZIP_MAX_MEMBERS = 2
    archive = zip_bytes({f"{n:04d}.jpg": b"" for n in range(100)})
    report = unpack_upload(campaign, "entries.zip", archive)
    assert [(r.name, r.reason) for r in report.refused] == [
        ("entries.zip", "lists more files than it may hold; at most 2")
    ]
