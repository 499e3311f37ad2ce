"""Import by URL: only public addresses, every spelling of a private one refused before any connection."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from dashboard.intake import parse_url_list
from dashboard.services import queue_url_imports
from jobs import url_fetcher
from jobs.errors import PermanentError
from jobs.public_addresses import address_problem, parse_networks
from tests.conftest import run_burst_worker
from tests.dashboard.pages import text_of
from tests.jobs.images import jpeg, photo
from tests.listeners import CountingListener

IMAGE = jpeg(photo(64, 48, seed=3))


@pytest.fixture
def listener():
    server = CountingListener()
    yield server
    server.close()


def test_no_spelling_of_loopback_or_private_reaches_a_listener(listener):
    port = listener.port
    urls = [
        f"http://127.0.0.1:{port}/a.jpg",
        f"http://localhost:{port}/a.jpg",
        f"http://2130706433:{port}/a.jpg",  # decimal
        f"http://0x7f000001:{port}/a.jpg",  # hex
        f"http://0177.0.0.1:{port}/a.jpg",  # octal
        f"http://127.1:{port}/a.jpg",
        f"http://[::1]:{port}/a.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/a.jpg",  # IPv4-mapped IPv6
        f"https://127.0.0.1:{port}/a.jpg",
    ]
    for url in urls:
        with pytest.raises(PermanentError) as error:
            url_fetcher.fetch_image(url)
        assert error.value.code == "url_forbidden", url
    assert listener.accepted == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10/a.jpg", "private"),
        ("http://172.16.5.4/a.jpg", "private"),
        ("http://100.64.0.1/a.jpg", "private or reserved"),  # carrier-grade NAT
        ("http://224.0.0.1/a.jpg", "multicast"),
        ("http://0.0.0.0/a.jpg", "reserved"),
        ("http://[fe80::1]/a.jpg", "link-local"),
        ("http://[::ffff:10.0.0.1]/a.jpg", "private"),
        ("ftp://example.com/a.jpg", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@example.com/a.jpg", "user name"),
    ],
)
def test_forbidden_urls_are_refused_with_a_reason(url, reason):
    with pytest.raises(PermanentError, match=reason):
        url_fetcher.fetch_image(url)


# IPv6 spellings that carry an IPv4 address a packet may end up at: through a NAT64 gateway, a 6to4 or
# Teredo relay, or the host's own dual stack.
EMBEDDED_IPV4 = [
    ("http://[::127.0.0.1]/a.jpg", "loopback"),  # IPv4-compatible (::/96)
    ("http://[::a9fe:a9fe]/latest/meta-data/", "link-local"),  # ::169.254.169.254
    ("http://[::8.8.8.8]/a.jpg", "IPv4-compatible"),  # deprecated: nothing public answers there
    ("http://[::ffff:169.254.169.254]/latest/", "link-local"),  # IPv4-mapped (::ffff:0:0/96)
    ("http://[::ffff:0:7f00:1]/a.jpg", "loopback"),  # IPv4-translated (::ffff:0:0:0/96)
    ("http://[64:ff9b::7f00:1]/a.jpg", "loopback"),  # NAT64 well-known prefix
    ("http://[64:ff9b::10.0.0.7]/a.jpg", "private"),
    ("http://[64:ff9b::a9fe:a9fe]/latest/", "link-local"),
    ("http://[64:ff9b:1::a9fe:a9fe]/latest/", "local-use NAT64"),  # 64:ff9b:1::/48, any layout
    ("http://[64:ff9b:1:ffff::808:808]/a.jpg", "local-use NAT64"),
    ("http://[2002:7f00:1::1]/a.jpg", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[2002:a9fe:a9fe::]/latest/", "link-local"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/a.jpg", "loopback"),  # Teredo client 127.0.0.1
    ("http://[2001:0:a9fe:a9fe:8000:63bf:f7f7:f7f7]/a.jpg", "link-local"),  # Teredo server 169.254.169.254
]


@pytest.mark.parametrize(("url", "reason"), EMBEDDED_IPV4)
def test_an_ipv4_address_inside_ipv6_is_judged_as_that_ipv4_address(url, reason):
    """Refused at once as permanent (never a connection error that would be tried again), with the reason."""
    with pytest.raises(PermanentError, match=reason) as error:
        url_fetcher.fetch_image(url)
    assert error.value.code == "url_forbidden"


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::8.8.8.8", "::ffff:8.8.8.8", "2002:808:808::1", "2001:4860:4860::8888", "8.8.8.8"],
)
def test_a_public_ipv4_inside_ipv6_and_plain_public_addresses_pass(address):
    """An IPv6-only host reaches public IPv4 servers through DNS64/NAT64: those stay allowed."""
    assert address_problem(ipaddress.ip_address(address)) is None


def test_a_trusted_network_is_trusted_through_nat64_too():
    trusted = parse_networks(["10.20.0.0/16"])
    assert address_problem(ipaddress.ip_address("64:ff9b::10.20.1.2"), trusted) is None
    assert "private" in address_problem(ipaddress.ip_address("64:ff9b::10.21.1.2"), trusted)


class ImageServer(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.hosts.append(self.headers.get("Host", ""))
        status, headers, body = self.routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def trusted_server(settings):
    """An image server on loopback, which an operator has explicitly trusted for this test."""
    settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    base = f"http://127.0.0.1:{server.server_port}"
    ImageServer.hosts = []
    ImageServer.routes = {
        "/shoe.jpg": (200, {"Content-Type": "image/jpeg"}, IMAGE),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/"}, b""),
        "/hop1": (302, {"Location": "/hop2"}, b""),
        "/hop2": (302, {"Location": "/hop3"}, b""),
        "/hop3": (302, {"Location": "/hop4"}, b""),
        "/hop4": (302, {"Location": "/shoe.jpg"}, b""),
        "/moved": (301, {"Location": "/shoe.jpg"}, b""),
        "/huge.jpg": (200, {}, b"\xff" * 5000),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def test_a_redirect_is_followed_and_each_hop_rechecked(trusted_server):
    assert url_fetcher.fetch_image(f"{trusted_server}/moved").data == IMAGE
    with pytest.raises(PermanentError, match="link-local"):
        url_fetcher.fetch_image(f"{trusted_server}/to-metadata")
    with pytest.raises(PermanentError, match="more than 3 redirects"):
        url_fetcher.fetch_image(f"{trusted_server}/hop1")


def test_a_body_over_the_limit_is_refused(trusted_server, settings):
    settings.PIXELMILL_MAX_UPLOAD_BYTES = 1000
    with pytest.raises(PermanentError, match="larger than the upload limit"):
        url_fetcher.fetch_image(f"{trusted_server}/huge.jpg")


def test_the_connection_goes_to_the_address_that_was_checked(trusted_server, monkeypatch):
    """The name is resolved once, checked, and the request sent to that address with the original Host."""
    port = trusted_server.rsplit(":", 1)[1]
    lookups = []
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        lookups.append(host)
        return real("127.0.0.1" if host == "images.example" else host, *args, **kwargs)

    monkeypatch.setattr(url_fetcher.socket, "getaddrinfo", resolver)
    fetched = url_fetcher.fetch_image(f"http://images.example:{port}/shoe.jpg")
    assert fetched.data == IMAGE and fetched.name == "shoe.jpg"
    # The name is looked up once; the socket is opened on the literal address that was checked.
    assert lookups.count("images.example") == 1 and set(lookups) <= {"images.example", "127.0.0.1"}
    assert ImageServer.hosts == [f"images.example:{port}"]


@pytest.mark.django_db(transaction=True)
def test_url_imports_add_images_and_name_each_refusal(campaign, trusted_server, redis_conn):
    text = f"url\n{trusted_server}/shoe.jpg\n# a comment\n\n{trusted_server}/nothing-here.jpg\nhttp://10.0.0.7/x.jpg\n"
    report = queue_url_imports(campaign, parse_url_list(text))
    assert (report.queued, report.already, report.refused) == (3, 0, [])
    assert not campaign.sources.exists(), "nothing is downloaded inside the request"
    run_burst_worker()

    rows = {row.url: row for row in campaign.url_imports.all()}
    shoe = rows[f"{trusted_server}/shoe.jpg"]
    assert (
        shoe.state == "succeeded" and shoe.source.display_name == "shoe.jpg" and shoe.source.origin == "url"
    )
    missing = rows[f"{trusted_server}/nothing-here.jpg"]
    assert (missing.state, missing.attempts) == ("failed", 1) and "HTTP 404" in missing.error_message
    private = rows["http://10.0.0.7/x.jpg"]
    assert private.state == "failed" and "private" in private.error_message


def test_the_campaign_page_queues_a_pasted_list_and_shows_what_came_of_it(
    marketer_client, campaign, trusted_server, django_capture_on_commit_callbacks
):
    url = reverse("campaign-import-urls", args=[campaign.pk])
    with django_capture_on_commit_callbacks(execute=False):
        response = marketer_client.post(
            url, {"urls": f"{trusted_server}/shoe.jpg\nhttp://169.254.169.254/\nftp://x/y.jpg"}, follow=True
        )
    page = response.content.decode()
    assert "Importing 2 URLs in the background" in page
    assert "Refused ftp://x/y.jpg: only http and https URLs can be imported." in page
    assert "2 waiting" in text_of(page, "url-import-counts")

    again = marketer_client.post(url, {"urls": f"{trusted_server}/shoe.jpg"}, follow=True).content.decode()
    assert "1 URL already imported, skipped." in again
    assert campaign.url_imports.count() == 3, "two to fetch, and the refused one kept for the list"
    assert 'id="refused-urls"' in again and "ftp://x/y.jpg" in again
    assert "Trying again would not help" in again, "a malformed URL is never offered a retry"
