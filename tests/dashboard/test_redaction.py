"""Share tokens and webhook secrets never reach the log, whichever logger writes them: real requests through
Django, written by the handler settings.LOGGING installs, read back as the JSON lines it wrote."""

from __future__ import annotations

import io
import json
import logging

from dashboard.redaction import redact

TOKEN = "12.abcdefabcdefabcdefabcdefabcdef01:Sig-nature_xyz"
FAL_SECRET = "fal0123456789abcdef"
SIGNING_SECRET = "whsec_" + "ab12" * 12


def test_secret_path_segments_and_signing_secrets_are_redacted_and_the_rest_kept():
    assert redact("GET /share/abc.def:sig/download/ HTTP/1.1") == "GET /share/[redacted]/download/ HTTP/1.1"
    assert redact("/webhooks/fal/0123abcd/") == "/webhooks/fal/[redacted]/"
    assert redact("{'path': 'share/abc:sig/x.webp'}") == "{'path': 'share/[redacted]/x.webp'}"
    assert redact(f"signed with {SIGNING_SECRET}.") == "signed with whsec_[redacted]."
    for kept in ("GET /campaigns/4/ HTTP/1.1", "/campaigns/4/share-links/", "/share-links/7/revoke/"):
        assert redact(kept) == kept


def test_no_log_record_carries_a_share_token_or_a_webhook_secret(client, db):
    handler = logging.getLogger().handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        client.get(f"/share/{TOKEN}/")  # no such link: "Gone"
        client.get(f"/share/{TOKEN}/no-such-page")
        client.post(f"/webhooks/fal/{FAL_SECRET}/", b"{}", content_type="application/json")
        ours = logging.getLogger("pixelmill.sharing")
        ours.warning("link %s refused", f"/share/{TOKEN}/", extra={"path": f"/share/{TOKEN}/x"})
        ours.info("secret rotated", extra={"headers": {"Pixelmill-Secret": SIGNING_SECRET}, "run": 3})
        try:
            raise ValueError(f"cannot sign with {SIGNING_SECRET}")
        except ValueError:
            ours.exception("webhook failed")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]

    assert TOKEN not in output and FAL_SECRET not in output and SIGNING_SECRET not in output
    messages = [line["message"] for line in lines]
    assert "Not Found: /share/[redacted]/no-such-page" in messages
    assert "Not Found: /webhooks/fal/[redacted]/" in messages
    assert "link /share/[redacted]/ refused" in messages
    by_message = {line["message"]: line for line in lines}
    assert by_message["Not Found: /share/[redacted]/no-such-page"]["request"] == (
        "<WSGIRequest: GET '/share/[redacted]/no-such-page'>"
    )
    assert by_message["link /share/[redacted]/ refused"]["path"] == "/share/[redacted]/x"
    assert by_message["secret rotated"]["headers"] == {"Pixelmill-Secret": "whsec_[redacted]"}
    assert by_message["secret rotated"]["run"] == 3
    assert "ValueError: cannot sign with whsec_[redacted]" in by_message["webhook failed"]["exc_info"]
