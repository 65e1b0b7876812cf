"""The one outbound-fetch guard: every request to a URL a user gave (vision images, webhooks) goes through
`guarded_request`, and nothing else in creditflow may fetch such a URL (tests/unit/test_outbound_clients.py).

drawbridge (an SSRF-safe httpx transport) resolves each host once, refuses the request if any resolved
address is in a blocked range, and connects to the address it checked with the Host header and TLS SNI of
the name (no second lookup, so DNS rebinding has nothing to rebind). Around it this module adds what the
issue asks beyond drawbridge: IPv4 in decimal/octal/hex/short spellings refused before any lookup,
IPv4-compatible and -translated IPv6 blocked, redirects followed here hop by hop (each hop through the same
checks), one deadline for the whole exchange (a body trickled a byte at a time cannot outlive it), a byte
cap and a content-type list.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import drawbridge
import httpx

WEB_PORTS = frozenset({80, 443, 8080, 8443})
# Beyond drawbridge's list (which unwraps ::ffff:a.b.c.d itself): IPv4-compatible ::a.b.c.d (::7f00:1),
# SIIT's IPv4-translated ::ffff:0:a.b.c.d, and the well-known NAT64 prefix, each of which can carry an
# internal IPv4 address.
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_EXTRA_BLOCKED: frozenset[Network] = frozenset(
    {
        ipaddress.IPv6Network("::/96"),
        ipaddress.IPv6Network("::ffff:0:0:0/96"),
        ipaddress.IPv6Network("64:ff9b::/96"),
    }
)
_LOOPBACK: frozenset[Network] = frozenset(
    {ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128")}
)
# A host made only of numbers (decimal, 0-octal, 0x-hex) between dots: what inet_aton reads as an IPv4
# address (127.1, 2130706433, 0x7f000001, 0177.0.0.1). Only the canonical dotted quad is accepted.
_NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CROSS_ORIGIN_HEADERS = frozenset({"accept", "accept-encoding", "accept-language", "user-agent"})
USER_AGENT = "creditflow-fetch/1"


class OutboundRefused(Exception):
    """An outbound request the guard refused or could not complete; `reason` is a machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class OutboundPolicy:
    """Limits of one kind of outbound request: body bytes, total seconds, redirect hops, content types."""

    max_bytes: int
    timeout_s: float
    max_redirects: int = 3
    content_types: frozenset[str] | None = None
    # Development and tests only (OUTBOUND_ALLOW_LOOPBACK, refused in production): 127.0.0.0/8 and ::1
    # are allowed, on any port. Every other blocked range stays blocked.
    allow_loopback: bool = False
    ports: frozenset[int] = field(default=WEB_PORTS)


@dataclass(frozen=True)
class OutboundResponse:
    """What came back: status, headers (lower-case names), the whole body and the final URL."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def check_url(url: str, policy: OutboundPolicy) -> httpx.URL:
    """The URL parsed, or OutboundRefused for a scheme, spelling or literal address the guard refuses."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise OutboundRefused("invalid_url", f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise OutboundRefused("scheme", f"only http and https URLs are fetched, not {parsed.scheme or '?'}:")
    host = parsed.host
    if not host:
        raise OutboundRefused("invalid_url", "the URL has no host")
    if _NUMERIC_HOST.match(host):
        try:
            canonical = str(ipaddress.IPv4Address(host)) == host
        except ValueError:
            canonical = False
        if not canonical:
            raise OutboundRefused(
                "address", f"the host {host!r} is an IPv4 address in a non-standard spelling"
            )
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return parsed
    _check_address(host, literal, policy)
    return parsed


def _check_address(
    host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: OutboundPolicy
) -> None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        # No real image or webhook URL spells an IPv4 address as IPv6; refused whatever it maps to.
        raise OutboundRefused("address", f"{host} is an IPv4 address spelled as IPv6")
    if policy.allow_loopback and any(ip in net for net in _LOOPBACK):
        return
    # Literal addresses are also checked by drawbridge; checking here too names the reason before any socket.
    if not ip.is_global or ip.is_multicast or any(ip in net for net in _EXTRA_BLOCKED):
        raise OutboundRefused("address", f"{host} is not a public address")


def _drawbridge_policy(policy: OutboundPolicy, timeout_s: float) -> drawbridge.Policy:
    return drawbridge.Policy(
        allow_private=False,
        allow_ports=frozenset(range(1, 65536)) if policy.allow_loopback else policy.ports,
        ip_allowlist=_LOOPBACK if policy.allow_loopback else frozenset(),
        ip_blocklist=_EXTRA_BLOCKED,
        timeout=timeout_s,
        max_redirects=0,  # followed below, hop by hop, each through check_url and the transport's checks
        max_response_bytes=None,  # read below under the deadline
        user_agent=USER_AGENT,
    )


def guarded_request(
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> OutboundResponse:
    """Send one request to a user-given URL under the guard's rules; OutboundRefused names what stopped it."""
    deadline = time.monotonic() + policy.timeout_s
    sent_headers = dict(headers or {})
    try:
        with drawbridge.SyncClient(_drawbridge_policy(policy, policy.timeout_s)) as client:
            for _hop in range(policy.max_redirects + 1):
                target = check_url(url, policy)
                remaining = _remaining(deadline)
                with client.stream(
                    method, str(target), headers=sent_headers, content=content, timeout=remaining
                ) as response:
                    location = response.headers.get("location")
                    if response.status_code not in _REDIRECTS or not location or policy.max_redirects == 0:
                        _check_content_type(response, policy)
                        body = _read_body(response, policy.max_bytes, deadline)
                        return OutboundResponse(
                            response.status_code, dict(response.headers.items()), body, str(target)
                        )
                    next_url = target.join(location)
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method not in ("GET", "HEAD")
                    ):
                        method, content = "GET", None
                    if _origin(next_url) != _origin(target):
                        # Credentials meant for one origin are not handed to the next.
                        sent_headers = {
                            k: v for k, v in sent_headers.items() if k.lower() in _CROSS_ORIGIN_HEADERS
                        }
                    url = str(next_url)
            raise OutboundRefused("redirects", f"more than {policy.max_redirects} redirects")
    except drawbridge.UnsafeSchemeError as exc:
        raise OutboundRefused("scheme", f"only http and https URLs are fetched, not {exc.scheme}:") from None
    except (drawbridge.BlockedAddressError, drawbridge.BlockedDomainError) as exc:
        raise OutboundRefused(
            "address", f"{exc.hostname} does not resolve to a public address only"
        ) from None
    except drawbridge.UnsafePortError as exc:
        raise OutboundRefused("port", f"port {exc.port} is not one of {sorted(policy.ports)}") from None
    except drawbridge.DrawbridgeDNSError as exc:
        raise OutboundRefused("dns", f"{exc.hostname} could not be resolved") from None
    except drawbridge.DrawbridgeError as exc:
        raise OutboundRefused("refused", str(exc)) from None
    except httpx.TimeoutException:
        raise OutboundRefused("timeout", f"no complete answer within {policy.timeout_s:g} s") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise OutboundRefused("invalid_url", f"not a fetchable URL: {exc}") from None
    except httpx.HTTPError as exc:
        raise OutboundRefused(
            "unreachable", f"the server could not be reached ({type(exc).__name__})"
        ) from None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpx.TimeoutException("deadline")
    return left


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _check_content_type(response: httpx.Response, policy: OutboundPolicy) -> None:
    if policy.content_types is None or not response.is_success:
        return
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in policy.content_types:
        allowed = ", ".join(sorted(policy.content_types))
        raise OutboundRefused("content_type", f"content type {media or 'none'!r} is not one of {allowed}")


def _read_body(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise OutboundRefused("too_large", f"the body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    # iter_bytes yields decoded bytes as they arrive (no chunk size: a chunker would wait for a full chunk
    # and a trickled body would never reach the deadline check), so a gzip bomb meets the cap on what it
    # expands to.
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise OutboundRefused("too_large", f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
        _remaining(deadline)
    return b"".join(chunks)


def content_types(names: Iterable[str]) -> frozenset[str]:
    """A content-type allow-list in the form OutboundPolicy expects (lower-case media types)."""
    return frozenset(name.strip().lower() for name in names)
