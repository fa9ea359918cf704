"""API keys and fetching image URLs without SSRF.

The API key is accepted as ``?api_key=``, as ``Authorization: Bearer KEY``, or (Roboflow
routes) as ``"api_key"`` in the JSON body; keys are compared in constant time, never logged.

Image URLs: only http(s); the host is resolved and EVERY address must be public (not
loopback, private, link-local, multicast, reserved, unspecified, shared or site-local;
IPv4-mapped IPv6 is checked as IPv4) unless ``allow_private``. The connection goes to the
address that was checked (the URL's host is kept for the Host header and TLS SNI), so a DNS
answer that changes between the check and the fetch (rebinding) cannot redirect it. Redirects
are followed by hand, each hop checked the same way; the body is read up to a byte limit,
all of it within one total deadline.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.server.errors import HTTPProblem


def key_matches(expected: str | None, given: str | None) -> bool:
    """True when no key is required, or ``given`` equals ``expected`` (constant time)."""
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def unauthorized() -> HTTPProblem:
    return HTTPProblem(401, "missing or wrong API key: pass ?api_key=KEY, an "
                            "'Authorization: Bearer KEY' header or \"api_key\" in the body",
                       {"WWW-Authenticate": "Bearer"})


_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s]*", re.IGNORECASE)


class RedactKeys(logging.Filter):
    """Logging filter: ``api_key=...`` in a record's message or arguments becomes ``***``
    (uvicorn's access log prints query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _KEY_IN_QUERY.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_KEY_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


@dataclass(frozen=True)
class UrlPolicy:
    allow_private: bool = False
    max_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 15.0
    max_redirects: int = 3


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif getattr(ip, "site_local", False) or ip.teredo is not None:
            return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """The first address of ``host``; HTTPProblem 400 if any address is not public (and
    private ones are not allowed) or the host does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HTTPProblem(400, f"image URL host {host!r} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise HTTPProblem(400, f"image URL host {host!r} has no address")
    if not allow_private:
        for addr in addresses:
            if not is_public_address(addr):
                raise HTTPProblem(400, f"image URL refused: {host!r} resolves to {addr}, a "
                                       "private/loopback/reserved address (start the server "
                                       "with --allow-private-urls to allow it)")
    return addresses[0]


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """GET an image URL safely (see the module docstring); HTTPProblem 400/413 on failure.

    ``policy.timeout_s`` is a total deadline for all of it (connections, redirects, the
    body), not a per-read timeout: a server dripping a byte at a time is cut off at the
    deadline (a watchdog shuts the socket down under a read that would block past it)."""
    deadline = time.monotonic() + policy.timeout_s
    current = url
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HTTPProblem(400, f"image URL must be http(s)://host/...: {current[:200]!r}")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as exc:
                raise HTTPProblem(400, f"image URL has a bad port: {exc}") from exc
            host = parts.hostname
            address = resolve_checked(host, port, policy.allow_private)
            target = httpx.URL(current).copy_with(host=address)
            host_header = host if parts.port is None else f"{host}:{parts.port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
            request = client.build_request(
                "GET", target, headers={"Host": host_header, "Accept": "image/*"},
                extensions={"sni_hostname": host}, timeout=_left(deadline, policy),
            )
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise _late(policy) from exc
            except httpx.HTTPError as exc:
                raise HTTPProblem(400, f"could not fetch image URL {host!r}: {exc}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    current = str(httpx.URL(current).join(location))
                    continue
                if response.status_code != 200:
                    raise HTTPProblem(400, f"image URL answered HTTP {response.status_code}")
                return _read_limited(response, policy, deadline)
            finally:
                response.close()
    raise HTTPProblem(400, f"image URL redirected more than {policy.max_redirects} times")


def _left(deadline: float, policy: UrlPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _late(policy)
    return left


def _late(policy: UrlPolicy) -> HTTPProblem:
    return HTTPProblem(400, f"image URL did not arrive within {policy.timeout_s:g} s "
                            "(--url-timeout)")


def _shut(response: httpx.Response) -> None:
    """Shut down the socket under ``response`` (unblocks a read in another thread)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _read_limited(response: httpx.Response, policy: UrlPolicy, deadline: float) -> bytes:
    limit = policy.max_bytes
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"image at URL is {int(declared):,} bytes; the limit is {limit:,}")
    chunks: list[bytes] = []
    total = 0
    watchdog = threading.Timer(_left(deadline, policy), _shut, (response,))
    watchdog.daemon = True
    watchdog.start()
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise HTTPProblem(413, f"image at URL is over the limit of {limit:,} bytes")
            chunks.append(chunk)
            _left(deadline, policy)
        _left(deadline, policy)  # a shut-down socket may look like the end of the body
    except httpx.HTTPError as exc:
        if time.monotonic() >= deadline:
            raise _late(policy) from exc
        raise HTTPProblem(400, f"could not read image URL: {exc}") from exc
    finally:
        watchdog.cancel()
    return b"".join(chunks)
