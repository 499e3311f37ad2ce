"""The simulator reads requests as HTTP/1.1 says (chunked bodies, keep-alive, 100-continue) and refuses
bodies it cannot or will not read, over a real socket."""

from __future__ import annotations

import hashlib
import socket

import httpx
import pytest

import simulator.connection
from simulator import ProviderSimulator
from simulator.calls import parse_form
from tests.jobs.images import png, product_on_white

IMAGE = png(product_on_white(64, 48))
BOUNDARY = "simulator-test-boundary"


@pytest.fixture
def sim():
    with ProviderSimulator() as running:
        yield running


def multipart_body(name: str, filename: str, data: bytes, **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode()
        for field, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def exchange(sim: ProviderSimulator, raw: bytes) -> bytes:
    """Send raw bytes and read until the simulator closes the connection."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_chunked_upload_is_read_whole(sim):
    body = multipart_body("file", "p.png", IMAGE, om="true")

    def pieces():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = httpx.post(
        sim.url("rembg") + "/api/remove",
        content=pieces(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert sim.log(kind="api")[-1]["input_sha256"] == hashlib.sha256(IMAGE).hexdigest()


def test_a_body_over_the_limit_is_a_413_and_the_connection_closes(sim, monkeypatch):
    monkeypatch.setattr(simulator.connection, "MAX_BODY_BYTES", 1000)
    declared = exchange(
        sim,
        b"POST /rembg/api/remove HTTP/1.1\r\nHost: sim\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 5000\r\n\r\n",
    )
    assert declared.startswith(b"HTTP/1.1 413 ") and b"connection: close" in declared.lower()
    chunked = exchange(
        sim,
        b"POST /rembg/api/remove HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n",
    )  # fmt: skip
    assert chunked.startswith(b"HTTP/1.1 413 ")
    assert [(e["status"], e["outcome"]) for e in sim.log()] == [(413, "bad_request")] * 2


def test_a_malformed_chunked_body_is_a_400(sim):
    answer = exchange(
        sim,
        b"POST /rembg/api/remove HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Malformed request body" in answer
    assert sim.log()[-1]["status"] == 400


def test_an_unreadable_request_is_refused_without_a_log_entry(sim):
    answer = exchange(sim, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Bad request" in answer
    assert sim.log() == []


def test_requests_on_one_connection_are_answered_in_turn_and_head_has_no_body(sim):
    stored = sim.files.store(sim.base_url, IMAGE, "png")
    path = stored.removeprefix(sim.base_url).encode()
    answer = exchange(
        sim,
        b"HEAD " + path + b" HTTP/1.1\r\nHost: sim\r\n\r\n"
        b"GET /_sim/health HTTP/1.1\r\nHost: sim\r\n\r\n"
        b"GET " + path + b" HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n",
    )
    head, health, download = answer.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert f"content-length: {len(IMAGE)}".encode() in head.lower() and head.endswith(b"\r\n\r\n")
    assert b'"status": "ok"' in health
    assert download.endswith(IMAGE)
    assert [(e["method"], e["kind"]) for e in sim.log()] == [
        ("HEAD", "download"),
        ("GET", "control"),
        ("GET", "download"),
    ]


def test_a_client_expecting_100_continue_is_told_to_go_on(sim):
    body = b'{"provider": "removebg", "latency_ms": 5}'
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
        sock.sendall(
            b"POST /_sim/config HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert sim.config.settings_for("removebg").latency_ms == 5


def test_forms_are_read_from_multipart_or_urlencoded_bodies():
    form = parse_form(
        f"multipart/form-data; boundary={BOUNDARY}", multipart_body("image_file", "a.png", IMAGE, size="hd")
    )
    assert form.files == {"image_file": IMAGE} and form.fields == {"size": "hd"}
    assert parse_form("application/x-www-form-urlencoded", b"a=1&b=&a=2").fields == {"a": "2", "b": ""}
    for content_type, body in [
        ("application/json", b"{}"),
        ("multipart/form-data", b""),
        (f"multipart/form-data; boundary={BOUNDARY}", b"--" + BOUNDARY.encode() + b"\r\nno end"),
    ]:
        with pytest.raises(ValueError):
            parse_form(content_type, body)
