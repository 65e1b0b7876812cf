"""The outbound-URL guard under generated URLs: a refused address stays refused in every spelling (decimal,
octal, hex, short forms, IPv6 forms, user-info and port around it), names resolving to one are refused before
any connect, and no input makes the guard raise anything but OutboundRefused. Resolution comes from the test's
own table (tests/support/network_guard); nothing connects anywhere."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import partial

from hypothesis import assume, given
from hypothesis import strategies as st

from runtime.outbound import OutboundPolicy, OutboundRefused, check_url, guarded_request
from tests.support.network_guard import NetworkGuard, install
from tests.unit.fuzz import FUZZ, FUZZ_REQUESTS

STRICT = OutboundPolicy(max_bytes=1_000, timeout_s=1.0)
LOCAL = OutboundPolicy(max_bytes=1_000, timeout_s=1.0, allow_loopback=True)
BLOCKED_V4 = [
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
]  # fmt: skip
BLOCKED_V6 = [
    ipaddress.IPv6Network(net)
    for net in (
        "::/96", "::1/128", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "ff00::/8",
    )
]  # fmt: skip
PRIVATE_V4 = [net for net in BLOCKED_V4 if not net.overlaps(ipaddress.IPv4Network("127.0.0.0/8"))]


@st.composite
def address_in(draw: st.DrawFn, networks: list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network]) -> str:
    net = draw(st.sampled_from(networks))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return str(net[offset])


def _part(draw: st.DrawFn, value: int) -> str:
    style = draw(st.sampled_from(["dec", "hex", "HEX", "oct", "zeros"]))
    if style == "hex":
        return f"0x{value:x}"
    if style == "HEX":
        return f"0X{value:X}"
    if style == "oct":
        return f"0{value:o}"
    return f"{value:0{draw(st.integers(1, 4))}d}" if style == "zeros" else str(value)


@st.composite
def ipv4_spellings(draw: st.DrawFn, address: str) -> str:
    """One of the ways inet_aton (and so many resolvers) reads `address`."""
    a, b, c, d = (int(x) for x in address.split("."))
    whole = int(ipaddress.IPv4Address(address))
    forms = draw(st.integers(1, 4))  # how many dotted parts
    parts = {
        1: [whole],
        2: [a, (b << 16) | (c << 8) | d],
        3: [a, b, (c << 8) | d],
        4: [a, b, c, d],
    }[forms]
    spelled = ".".join(_part(draw, value) for value in parts)
    return spelled + ("." if draw(st.booleans()) else "")


@st.composite
def ipv6_spellings(draw: st.DrawFn, address: str) -> str:
    ip = ipaddress.IPv6Address(address)
    form = draw(st.sampled_from(["short", "exploded", "upper", "v4tail", "zone"]))
    if form == "exploded":
        text = ip.exploded
    elif form == "upper":
        text = str(ip).upper()
    elif form == "v4tail":
        packed = ip.packed
        head = ipaddress.IPv6Address(packed[:12] + b"\0\0\0\0").exploded.rsplit(":", 2)[0]
        text = f"{head}:{ipaddress.IPv4Address(packed[12:])}"
    elif form == "zone":
        text = f"{ip}%25eth0"
    else:
        text = str(ip)
    return f"[{text}]"


@st.composite
def urls_around(draw: st.DrawFn, host: str) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@", "public.example@", "8.8.8.8@"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":22", ":6379"]))
    path = draw(st.sampled_from(["", "/", "/a.png", "/?x=@evil.example", "/#@public.example"]))
    return f"{scheme}://{userinfo}{host}{port}{path}"


def _reason(call: Callable[[], object]) -> str | None:
    """The guard's refusal reason for `call`, None if it let the request through."""
    try:
        call()
    except OutboundRefused as exc:
        return exc.reason if exc.message else "unexplained"
    return None


def _refused_offline(url: str, policy: OutboundPolicy = STRICT) -> str | None:
    guard = NetworkGuard()
    undo = install(guard)
    try:
        reason = _reason(partial(guarded_request, "GET", url, policy=policy))
    finally:
        undo()
    assert guard.connects == [], (url, guard.connects)
    return reason


@FUZZ_REQUESTS
@given(st.data())
def test_blocked_ipv4_in_any_spelling_is_refused_before_any_lookup(data: st.DataObject) -> None:
    address = data.draw(address_in(BLOCKED_V4))
    url = data.draw(urls_around(data.draw(ipv4_spellings(address))))
    guard = NetworkGuard()
    undo = install(guard)
    try:
        reason = _reason(partial(guarded_request, "GET", url, policy=STRICT))
        assert reason in ("address", "invalid_url"), (url, reason)
    finally:
        undo()
    assert (guard.lookups, guard.connects) == ([], []), url


@FUZZ
@given(st.data())
def test_private_addresses_stay_refused_when_loopback_is_allowed(data: st.DataObject) -> None:
    v4 = data.draw(ipv4_spellings(data.draw(address_in(PRIVATE_V4))))
    v6_nets = [net for net in BLOCKED_V6 if net != ipaddress.IPv6Network("::1/128")]
    v6_address = data.draw(address_in(v6_nets))
    assume(v6_address != "::1")  # ::/96 holds it too
    v6 = data.draw(ipv6_spellings(v6_address))
    for host in (v4, v6):
        url = data.draw(urls_around(host))
        assert _reason(partial(check_url, url, LOCAL)) in ("address", "invalid_url"), url


@FUZZ_REQUESTS
@given(st.data())
def test_blocked_ipv6_in_any_spelling_is_refused(data: st.DataObject) -> None:
    address = data.draw(address_in(BLOCKED_V6))
    url = data.draw(urls_around(data.draw(ipv6_spellings(address))))
    assert _refused_offline(url) in ("address", "invalid_url"), url


@FUZZ_REQUESTS
@given(st.data())
def test_ipv4_hidden_in_ipv6_is_refused_whatever_it_maps_to(data: st.DataObject) -> None:
    v4 = ipaddress.IPv4Address(data.draw(st.integers(0, 2**32 - 1)))
    prefix = data.draw(st.sampled_from(["::ffff:", "::", "::ffff:0:", "64:ff9b::"]))
    url = data.draw(urls_around(f"[{prefix}{v4}]"))
    assert _refused_offline(url) in ("address", "invalid_url"), url


@FUZZ
@given(st.data())
def test_public_addresses_pass_only_in_their_canonical_spelling(data: st.DataObject) -> None:
    first = data.draw(st.sampled_from([1, 8, 23, 45, 80, 151, 200, 213]))  # public /8s
    ip = ipaddress.IPv4Address((first << 24) | data.draw(st.integers(0, 2**24 - 1)))
    assume(ip.is_global)
    spelled = data.draw(ipv4_spellings(str(ip)))
    url = f"http://{spelled}/"
    if spelled == str(ip):
        assert check_url(url, STRICT).host == str(ip)
    else:
        assert _reason(partial(check_url, url, STRICT)) in ("address", "invalid_url"), url


@FUZZ_REQUESTS
@given(
    name=st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){1,3}\Z"),
    answers=st.lists(st.one_of(address_in(BLOCKED_V4), address_in(BLOCKED_V6)), min_size=1, max_size=3),
    public=st.lists(st.sampled_from(["8.8.8.8", "1.1.1.1", "2606:4700::1111"]), max_size=2),
    data=st.data(),
)
def test_a_name_with_any_refused_answer_is_refused_before_connecting(
    name: str, answers: list[str], public: list[str], data: st.DataObject
) -> None:
    ordered = data.draw(st.permutations(answers + public))
    guard = NetworkGuard()
    guard.map(name, *ordered)
    undo = install(guard)
    try:
        reason = _reason(partial(guarded_request, "GET", data.draw(urls_around(name)), policy=STRICT))
    finally:
        undo()
    assert reason in ("address", "port"), (ordered, reason)
    assert guard.connects == []


@FUZZ
@given(st.text(max_size=80) | st.from_regex(r"\Ahttps?://[^/]{0,40}(/.{0,20})?\Z"))
def test_no_input_makes_the_guard_fail_otherwise(url: str) -> None:
    try:
        parsed = check_url(url, STRICT)
    except OutboundRefused as exc:
        refusal = exc
    else:
        refusal = None
    if refusal is not None:
        assert refusal.reason in ("invalid_url", "scheme", "address")
        return
    # What passes is http(s) to a name or to a public address in its canonical spelling.
    assert parsed.scheme in ("http", "https")
    assert parsed.host
    try:
        ip = ipaddress.ip_address(parsed.host)
    except ValueError:
        return
    assert ip.is_global, url
    assert not ip.is_multicast, url
    assert str(ip) == parsed.host.lower(), url
