"""Fetching images by URL without becoming a proxy into our own network (SSRF-safe)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

from django.conf import settings

from jobs.errors import PermanentError, TransientError
from jobs.public_addresses import IPAddress, IPNetwork, address_problem, parse_networks

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 3


@dataclass(frozen=True)
class FetchedImage:
    url: str
    name: str
    data: bytes


def allowed_networks() -> list[IPNetwork]:
    """Extra networks an operator trusts (e.g. an intranet image library); empty by default."""
    return parse_networks(settings.PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS)


def resolve_public(host: str, port: int) -> IPAddress:
    """Resolve `host` and insist every address is public; return the one we will connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno == socket.EAI_AGAIN:  # the resolver is having a bad moment: worth another try
            raise TransientError(
                f"the host {host!r} could not be resolved just now", code="url_dns"
            ) from error
        raise PermanentError(f"the host {host!r} could not be resolved", code="url_unresolvable") from error
    except UnicodeError as error:
        raise PermanentError(f"the host {host!r} could not be resolved", code="url_unresolvable") from error
    # A stream socket's address is a string; typeshed's union also covers families we never ask for.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    allowed = allowed_networks()
    for address in addresses:
        problem = address_problem(address, allowed)
        if problem:
            # One bad answer is enough: a rebinding attacker would serve both kinds.
            raise PermanentError(f"the address {problem}", code="url_forbidden")
    return addresses[0]


def pinned_request(
    client: httpx.Client,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send the request to the address we checked, not to a second DNS answer (no DNS rebinding)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PermanentError("only http and https URLs can be imported", code="url_scheme")
    if not parts.hostname:
        raise PermanentError("the URL has no host", code="url_invalid")
    if parts.username or parts.password:
        raise PermanentError("URLs with a user name or password are not imported", code="url_invalid")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise PermanentError("the URL has an invalid port", code="url_invalid") from error
    address = resolve_public(parts.hostname, port)
    literal = f"[{address}]" if address.version == 6 else str(address)
    target = parts._replace(netloc=f"{literal}:{port}").geturl()
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    request = client.build_request(
        method,
        target,
        headers={**(headers or {}), "Host": host_header},
        content=content,
        # TLS still verifies the certificate against the real host name.
        extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
    )
    return client.send(request, stream=True)


def read_body(response: httpx.Response, limit: int) -> bytes:
    """The body of a 200 answer, stopping as soon as it passes `limit` bytes."""
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TransientError(f"the server answered HTTP {response.status_code}", code="url_unavailable")
    if response.status_code != 200:
        raise PermanentError(f"the server answered HTTP {response.status_code}", code="url_status")
    if int(response.headers.get("content-length") or 0) > limit:
        raise PermanentError("the image is larger than the upload limit", code="too_large")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise PermanentError("the image is larger than the upload limit", code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_image(url: str, *, client: httpx.Client | None = None) -> FetchedImage:
    """Download one image URL, re-checking every redirect, with a size cap and timeouts.

    Raises PermanentError when trying again cannot help (a refused address, a 404, too large) and
    TransientError when it may (a timeout, a refused connection, a 5xx or 429).
    """
    import httpx  # on the first download, not in every worker

    limit = settings.PIXELMILL_MAX_UPLOAD_BYTES
    own_client = client is None
    client = client or httpx.Client(
        timeout=httpx.Timeout(settings.PIXELMILL_URL_IMPORT_TIMEOUT_SECONDS), follow_redirects=False
    )
    try:
        current = url.strip()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = pinned_request(client, current, headers={"Accept": "image/*"})
                try:
                    if response.is_redirect:
                        current = urljoin(current, response.headers.get("location", ""))
                        continue
                    data = read_body(response, limit)
                finally:
                    response.close()
            except httpx.TimeoutException as error:
                raise TransientError("the server did not answer in time", code="url_timeout") from error
            except httpx.HTTPError as error:
                # A refused or reset connection: the server may be back in a minute.
                raise TransientError(
                    f"the download failed ({type(error).__name__})", code="url_failed"
                ) from error
            name = PurePosixPath(unquote(urlsplit(current).path)).name or "image"
            return FetchedImage(url=current, name=name, data=data)
        raise PermanentError(f"more than {MAX_REDIRECTS} redirects", code="url_redirects")
    finally:
        if own_client:
            client.close()


def post_json(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> int:
    """POST `body` to a user-supplied URL (a webhook) under the same guard as import: public addresses only,
    the connection pinned to the checked address, and no redirects (a 3xx is an answer, never followed).

    Returns the HTTP status without reading the answer; a refused address, a timeout or a failed connection
    raise PermanentError with a reason a marketer can read.
    """
    import httpx  # on the first download, not in every worker

    with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
        try:
            response = pinned_request(
                client,
                url.strip(),
                method="POST",
                headers={**headers, "Content-Type": "application/json"},
                content=body,
            )
        except httpx.TimeoutException as error:
            raise PermanentError(
                f"the server did not answer within {timeout:g} s", code="url_timeout"
            ) from error
        except httpx.HTTPError as error:
            raise PermanentError(f"the request failed ({type(error).__name__})", code="url_failed") from error
        response.close()
        return response.status_code
