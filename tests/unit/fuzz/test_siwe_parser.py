"""The SIWE (EIP-4361) parser and origin check under generated messages: what build_message writes
parses back field for field; any text is a SiweMessage or a SiweError (which the route answers with 401),
never another exception (a 500); a message for another origin, however spelled, is refused; a signature
recovers its signer."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given
from hypothesis import strategies as st

from api.auth.siwe import SiweError, build_message, check_origin, parse_message, recover_signer
from tests.unit.fuzz import FUZZ, FUZZ_REQUESTS

ORIGIN = "https://app.example"
ADDRESS = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"
KEY = Account.from_key("0x" + "11" * 32)

labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
hosts = st.builds(".".join, st.lists(labels, min_size=1, max_size=4))
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
statements = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\n\r", exclude_categories=["Cs"]),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() and ": " not in s and not s.startswith(("Resources:", "- ")))
nonces = st.from_regex(r"\A[A-Za-z0-9]{8,64}\Z")


@FUZZ
@given(
    domain=hosts,
    port=st.sampled_from(["", ":8443"]),
    path=st.from_regex(r"\A(/[a-z0-9._~-]{0,8}){0,3}\Z"),
    chain_id=st.integers(1, 2**64),
    nonce=nonces,
    issued_at=times,
    expires=st.none() | times,
    statement=statements,
)
def test_what_build_message_writes_parses_back(  # noqa: PLR0917 - one field each
    domain: str, port: str, path: str, chain_id: int, nonce: str, issued_at: datetime,
    expires: datetime | None, statement: str | None,
) -> None:  # fmt: skip
    uri = f"https://{domain}{port}{path}"
    text = build_message(
        domain=domain + port, address=ADDRESS.lower(), uri=uri, chain_id=chain_id, nonce=nonce,
        issued_at=issued_at, statement=statement, expiration_time=expires,
    )  # fmt: skip
    parsed = parse_message(text)
    assert (parsed.domain, parsed.address, parsed.uri, parsed.chain_id, parsed.nonce) == (
        domain + port, ADDRESS, uri, chain_id, nonce,
    )  # fmt: skip
    assert (parsed.issued_at, parsed.expiration_time, parsed.statement) == (issued_at, expires, statement)
    check_origin(parsed, f"https://{domain}{port}")  # and it is for the site it names


ODD_VALUES = [
    "²", "١٢", "\U0001d7d9", "1e3", "-1", " 1", "0x1", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00",
    "9999-12-31T23:59:59-23:59",
]  # fmt: skip
FIELD_VALUES = st.text(max_size=30) | st.from_regex(r"\A[0-9]{0,5000}\Z") | st.sampled_from(ODD_VALUES)
FIELD_NAMES = [
    "URI",
    "Version",
    "Chain ID",
    "Nonce",
    "Issued At",
    "Expiration Time",
    "Not Before",
    "Request ID",
]


VALID = {
    "URI": "https://app.example", "Version": "1", "Chain ID": "1", "Nonce": "abcdefgh1234",
    "Issued At": "2030-01-01T00:00:00Z",
}  # fmt: skip


@FUZZ
@given(
    header=st.sampled_from(["app.example", "https://app.example", "", "x y"]) | st.text(max_size=20),
    address=st.sampled_from([ADDRESS, ADDRESS.lower(), ADDRESS[:-1], "0x" + "g" * 40, ""])
    | st.text(max_size=42),
    changed=st.dictionaries(st.sampled_from(FIELD_NAMES), FIELD_VALUES, max_size=3),
    dropped=st.sets(st.sampled_from(sorted(VALID)), max_size=1),
    extra=st.lists(st.text(max_size=20), max_size=2),
    valid_head=st.booleans(),
)
def test_any_message_parses_or_is_a_siwe_error(  # noqa: PLR0917 - one part each
    header: str, address: str, changed: dict[str, str], dropped: set[str], extra: list[str], valid_head: bool
) -> None:
    if valid_head:  # most of the message right, so the fields themselves are what is judged
        header, address = "app.example", ADDRESS
    fields = {name: value for name, value in {**VALID, **changed}.items() if name not in dropped}
    lines = [f"{header} wants you to sign in with your Ethereum account:", address, "", *extra]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    for text in ("\n".join(lines), "\n".join(lines).replace("\n", "\r\n")):
        try:
            parsed = parse_message(text)
        except SiweError:
            continue
        assert parsed.chain_id >= 0
        assert parsed.issued_at.tzinfo is not None
        assert fields["Chain ID"].strip() == str(parsed.chain_id).lstrip("0") or parsed.chain_id == 0
        assert "\n" not in parsed.domain
        assert parsed.address.startswith("0x")


@FUZZ
@given(
    chain=st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=8)
    | st.from_regex(r"\A[1-9][0-9]{70,5000}\Z")
)
def test_a_chain_id_is_ascii_digits_or_refused(chain: str) -> None:
    text = "\n".join(
        ["app.example wants you to sign in with your Ethereum account:", ADDRESS, ""]
        + [f"{name}: {chain if name == 'Chain ID' else value}" for name, value in VALID.items()]
    )
    try:
        parsed = parse_message(text)
    except SiweError:
        return
    assert chain.isascii()
    assert parsed.chain_id == int(chain) < 2**256


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_is_a_siwe_error(text: str) -> None:
    with contextlib.suppress(SiweError):
        parse_message(text)


@FUZZ
@given(
    trick=st.sampled_from(
        [
            "{h}.evil.example",
            "evil.example",
            "{h}@evil.example",
            "evil.example@{h}",
            "{h}:444",
            "{h}:0",
            "{h}:99999",
            "{h}.",
            "{h}:443@evil.example",
            "xn--{h}",
            "[::1]",
            "evil.example:443",
        ]
    ),
    uri_trick=st.sampled_from(
        [
            "https://evil.example/{h}",
            "https://{h}.evil.example/",
            "http://{h}/",
            "https://{h}@evil.example/",
            "https://evil.example#{h}",
            "https://{h}:444/",
            "javascript://{h}/",
            "//{h}/",
            "https:{h}",
        ]
    ),
    honest=st.sampled_from(["{h}", "APP.example", "{h}:443", "https://{h}"]),
    honest_uri=st.sampled_from(["https://{h}", "https://{h}/login?x=1", "HTTPS://App.Example:443/"]),
)
def test_a_message_for_another_origin_is_refused(
    trick: str, uri_trick: str, honest: str, honest_uri: str
) -> None:
    host = "app.example"

    def message(domain: str, uri: str) -> str:
        scheme, _, bare = domain.rpartition("://")
        text = build_message(
            domain=domain,
            address=ADDRESS,
            uri=uri,
            chain_id=1,
            nonce="abcdefgh1234",
            issued_at=datetime.now(UTC),
        )
        assert scheme in ("", "https")
        assert bare
        return text

    good = parse_message(message(honest.format(h=host), honest_uri.format(h=host)))
    check_origin(good, ORIGIN)
    for domain, uri in (
        (trick.format(h=host), honest_uri.format(h=host)),
        (honest.format(h=host), uri_trick.format(h=host)),
    ):
        try:
            parsed = parse_message(message(domain, uri))
        except SiweError:
            continue
        with pytest.raises(SiweError):
            check_origin(parsed, ORIGIN)


@FUZZ_REQUESTS  # eth-account signs and recovers in pure Python: ~50 ms an example
@given(
    text=st.text(max_size=200), signature=st.text(max_size=140) | st.from_regex(r"\A(0x)?[0-9a-fA-F]{130}\Z")
)
def test_signatures_recover_their_signer_or_are_refused(text: str, signature: str) -> None:
    signed = KEY.sign_message(encode_defunct(text=text)).signature.hex()
    assert recover_signer(text, signed) == KEY.address
    assert recover_signer(text, "0x" + signed.removeprefix("0x")) == KEY.address
    try:
        signer = recover_signer(text, signature)
    except SiweError:
        return
    assert signer.startswith("0x")
    assert len(signer) == 42
    assert signer != KEY.address or signature.removeprefix("0x").lower() == signed.removeprefix("0x").lower()
