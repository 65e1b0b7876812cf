"""The outbound-fetch guard against a real HTTP server on 127.0.0.1, names resolved from the test's own
table, and a socket guard that fails the test on any connect beyond 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from runtime.outbound import OutboundPolicy, OutboundRefused, check_url, content_types, guarded_request
from tests.support.network_guard import NetworkGuard, network_guard
from tests.support.web_origin import Answer, WebOrigin, body, redirect, web_origin

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100
STRICT = OutboundPolicy(max_bytes=10_000, timeout_s=2.0)
LOCAL = OutboundPolicy(max_bytes=10_000, timeout_s=2.0, allow_loopback=True)


@pytest.fixture
def guard() -> Iterator[NetworkGuard]:
    with network_guard() as installed:
        yield installed


@pytest.fixture
def origin() -> Iterator[WebOrigin]:
    with web_origin() as server:
        server.answers["/cat.png"] = body(PNG, "image/png")
        yield server


def refused(url: str, policy: OutboundPolicy = STRICT) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as caught:
        guarded_request("GET", url, policy=policy)
    return caught.value


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",  # short form
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0x7f.0.0.1",
        "0177.0.0.1",  # octal
        "017700000001",
        "127.0.0.1.",
        "0",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata (link-local)
        "100.64.0.1",  # CGNAT
        "224.0.0.1",  # multicast
        "255.255.255.255",
        "[::]",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped, dotted
        "[::ffff:7f00:1]",  # IPv4-mapped, hex
        "[0:0:0:0:0:ffff:7f00:1]",
        "[::ffff:a9fe:a9fe]",  # mapped metadata address
        "[::127.0.0.1]",  # IPv4-compatible
        "[::7f00:1]",
        "[::ffff:0:7f00:1]",  # IPv4-translated
        "[64:ff9b::7f00:1]",  # NAT64
        "[fc00::1]",
        "[fd12:3456::1]",  # unique-local
        "[fe80::1]",  # link-local
        "[ff02::1]",  # multicast
    ],
)
def test_refused_addresses_are_refused_before_any_connect(guard: NetworkGuard, host: str) -> None:
    error = refused(f"http://{host}/x")
    assert error.reason in ("address", "invalid_url"), error.message
    assert guard.connects == []
    assert guard.lookups == []  # no literal, in any spelling, was handed to a resolver


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/a", "dict://x:11211/", "data:,x"],
)
def test_other_schemes_are_refused(guard: NetworkGuard, url: str) -> None:
    assert refused(url).reason == "scheme"
    assert guard.connects == []


def test_a_name_resolving_to_a_private_address_is_refused(guard: NetworkGuard) -> None:
    guard.map("intranet.test", "10.1.2.3")
    assert refused("http://intranet.test/x").reason == "address"
    guard.map("mixed.test", "8.8.8.8", "192.168.0.7")  # one bad answer among good ones is enough
    assert refused("http://mixed.test/x").reason == "address"
    guard.map("loop.test", "127.0.0.1")
    assert refused("http://loop.test/x").reason == "address"
    assert guard.connects == []


def test_loopback_switch_allows_loopback_only(guard: NetworkGuard, origin: WebOrigin) -> None:
    guard.map("images.test", "127.0.0.1")
    answer = guarded_request("GET", origin.url("/cat.png", "images.test"), policy=LOCAL)
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, PNG, "image/png")
    assert origin.requests[-1][2]["host"] == f"images.test:{origin.port}"  # the name, not the address
    guard.map("intranet.test", "10.1.2.3")
    assert refused("http://intranet.test/x", LOCAL).reason == "address"
    assert refused("http://[::ffff:a9fe:a9fe]/", LOCAL).reason == "address"
    assert guard.connects == ["127.0.0.1"]


def test_the_checked_address_is_the_one_connected_no_second_lookup(
    guard: NetworkGuard, origin: WebOrigin
) -> None:
    # DNS rebinding: the first answer is the checked one; a second lookup would get a private address.
    guard.map("rebind.test", "127.0.0.1")
    real = guard.names

    class Rebinding(dict[str, list[str]]):
        def get(self, key: str, default: object = None) -> list[str]:  # type: ignore[override]
            answer = real["rebind.test"] if not guard.lookups[:-1] else ["10.9.9.9"]
            return answer if key == "rebind.test" else list(real.get(key, []))

    guard.names = Rebinding()
    answer = guarded_request("GET", origin.url("/cat.png", "rebind.test"), policy=LOCAL)
    assert answer.body == PNG
    assert guard.lookups == ["rebind.test"]
    assert guard.connects == ["127.0.0.1"]


def test_redirects_are_checked_hop_by_hop(guard: NetworkGuard, origin: WebOrigin) -> None:
    origin.answers["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    origin.answers["/to-mapped"] = redirect("http://[::ffff:7f00:1]/")
    origin.answers["/to-file"] = redirect("file:///etc/passwd")
    guard.map("inside.test", "10.0.0.8")
    origin.answers["/to-name"] = redirect("http://inside.test/secret")
    for path in ("/to-metadata", "/to-mapped", "/to-name"):
        assert refused(origin.url(path), LOCAL).reason == "address", path
    assert refused(origin.url("/to-file"), LOCAL).reason == "scheme"
    # Under the strict policy even the first hop (loopback) is refused.
    assert refused(origin.url("/to-metadata")).reason == "address"
    assert set(guard.connects) == {"127.0.0.1"}


def test_redirects_are_followed_up_to_the_limit(guard: NetworkGuard, origin: WebOrigin) -> None:
    for hop in range(4):
        origin.answers[f"/hop{hop}"] = redirect(f"/hop{hop + 1}")
    origin.answers["/hop4"] = body(PNG, "image/png")
    answer = guarded_request("GET", origin.url("/hop1"), policy=LOCAL)  # 3 redirects: allowed
    assert (answer.body, answer.url) == (PNG, origin.url("/hop4"))
    assert refused(origin.url("/hop0"), LOCAL).reason == "redirects"
    no_follow = OutboundPolicy(max_bytes=100, timeout_s=2, max_redirects=0, allow_loopback=True)
    assert guarded_request("GET", origin.url("/hop0"), policy=no_follow).status == 302


def test_cross_origin_redirect_drops_credentials(guard: NetworkGuard, origin: WebOrigin) -> None:
    guard.map("other.test", "127.0.0.1")
    origin.answers["/away"] = redirect(origin.url("/cat.png", "other.test"))
    guarded_request(
        "GET", origin.url("/away"), policy=LOCAL, headers={"Authorization": "secret", "Accept": "*/*"}
    )
    first, second = origin.requests[-2][2], origin.requests[-1][2]
    assert first["authorization"] == "secret"
    assert "authorization" not in second
    assert second["accept"] == "*/*"


def test_oversized_bodies_are_refused(guard: NetworkGuard, origin: WebOrigin) -> None:
    origin.answers["/declared"] = body(b"x" * 20_000, "image/png")
    origin.answers["/chunked"] = Answer(
        headers={"Content-Type": "image/png"}, chunks=[b"x" * 4096] * 5, declare_length=False
    )
    assert refused(origin.url("/declared"), LOCAL).reason == "too_large"
    assert refused(origin.url("/chunked"), LOCAL).reason == "too_large"


def test_a_slow_body_meets_one_deadline(guard: NetworkGuard, origin: WebOrigin) -> None:
    # Each byte arrives well within any per-read timeout; the whole body would take 6 s.
    origin.answers["/trickle"] = Answer(
        headers={"Content-Type": "image/png"}, chunks=[b"x"] * 30, pause_s=0.2
    )
    policy = OutboundPolicy(max_bytes=10_000, timeout_s=1.0, allow_loopback=True)
    started = time.monotonic()
    assert refused(origin.url("/trickle"), policy).reason == "timeout"
    assert time.monotonic() - started < 2.5


def test_content_types_are_checked(guard: NetworkGuard, origin: WebOrigin) -> None:
    origin.answers["/page"] = body(b"<html>", "text/html; charset=utf-8")
    images = OutboundPolicy(
        max_bytes=10_000, timeout_s=2, allow_loopback=True, content_types=content_types(["image/png"])
    )
    assert refused(origin.url("/page"), images).reason == "content_type"
    assert guarded_request("GET", origin.url("/cat.png"), policy=images).body == PNG


def test_ports_beyond_the_web_ports_are_refused_in_production_policy(guard: NetworkGuard) -> None:
    guard.map("public.test", "93.184.216.34")
    assert refused("http://public.test:6379/").reason == "port"
    assert guard.connects == []


def test_unknown_names_and_bad_urls(guard: NetworkGuard) -> None:
    assert refused("http://nowhere.test/").reason == "dns"
    assert refused("http:///nohost").reason == "invalid_url"
    assert refused("not a url").reason in ("scheme", "invalid_url")


def test_check_url_accepts_a_public_name() -> None:
    assert check_url("https://example.com/a.png", STRICT).host == "example.com"
