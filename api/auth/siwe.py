"""Sign-In With Ethereum (EIP-4361): parse and check the message, recover the signer, single-use nonces.

Rule: the origin a message must name (its domain, the scheme in front of it if any, and the origin
of its URI) comes from configuration only (`Settings.siwe_origin`: PUBLIC_URL, SIWE_DOMAIN
overriding the host), never from the request's Host or X-Forwarded-Host. Otherwise a page on
evil.example asks for a signature for evil.example, posts it with `Host: evil.example`, and gets a
token: the domain binding, EIP-4361's phishing protection, would be gone.

Our own parser, not the `siwe` package (4.4): that one pins eth-account < 0.14 and web3 < 8 (we run
0.14 and 8), pulls in web3 with aiohttp and websockets for EIP-1271 contract wallets, and checks
neither the URI nor (unless asked) the domain.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import redis
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_address, to_checksum_address

NONCE_KEY = "siwe:nonce:"
HEADER = re.compile(
    r"^(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://)?(?P<domain>[^\s/]+)"
    r" wants you to sign in with your Ethereum account:$"
)
FIELDS = {
    "URI": "uri", "Version": "version", "Chain ID": "chain_id", "Nonce": "nonce", "Issued At": "issued_at",
    "Expiration Time": "expiration_time", "Not Before": "not_before", "Request ID": "request_id",
}
NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
# EIP-4361's chain-id is 1*DIGIT (ASCII), an EIP-155 id (uint256: at most 78 digits). str.isdigit also
# passes "²" (which int() then refuses: a 500) and Arabic-Indic digits (which int() reads).
CHAIN_ID = re.compile(r"^[0-9]{1,78}$")
DEFAULT_PORTS = {"http": 80, "https": 443}


class SiweError(ValueError):
    """The message or signature is not acceptable; the text says why."""


@dataclass(frozen=True)
class SiweMessage:
    """The fields of an EIP-4361 message that creditflow checks."""

    domain: str
    address: str
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    statement: str | None = None
    scheme: str | None = None  # the optional scheme in front of the domain (EIP-4361 `scheme://`)


def _time(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SiweError(f"{name} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise SiweError(f"{name} needs a time zone")
    return value


def _optional_time(values: dict[str, str], key: str, name: str) -> datetime | None:
    return _time(values[key], name) if key in values else None


def parse_message(text: str) -> SiweMessage:
    """Parse an EIP-4361 message; raise SiweError if it is not one."""
    lines = text.split("\n")
    match = HEADER.match(lines[0]) if lines else None
    if match is None or len(lines) < 6 or not is_address(lines[1].strip()):
        raise SiweError("not an EIP-4361 message")
    values: dict[str, str] = {}
    statement: list[str] = []
    in_fields = False
    for line in lines[2:]:
        name, sep, value = line.partition(": ")
        if sep and name in FIELDS:
            in_fields = True
            values[FIELDS[name]] = value.strip()
        elif not in_fields and line.strip():
            statement.append(line)
        elif in_fields and line.strip() and not line.startswith(("Resources:", "- ")):
            raise SiweError(f"unexpected line in message: {line[:40]!r}")
    missing = [name for name in ("uri", "version", "chain_id", "nonce", "issued_at") if name not in values]
    if missing:
        raise SiweError(f"message lacks {', '.join(missing)}")
    if not CHAIN_ID.match(values["chain_id"]) or int(values["chain_id"]) >= 2**256:
        raise SiweError("Chain ID is not a number")
    return SiweMessage(
        domain=match["domain"],
        address=to_checksum_address(lines[1].strip()),
        uri=values["uri"],
        version=values["version"],
        chain_id=int(values["chain_id"]),
        nonce=values["nonce"],
        issued_at=_time(values["issued_at"], "Issued At"),
        expiration_time=_optional_time(values, "expiration_time", "Expiration Time"),
        not_before=_optional_time(values, "not_before", "Not Before"),
        statement="\n".join(statement) or None,
        scheme=match["scheme"].lower() if match["scheme"] else None,
    )


def _authority(scheme: str, netloc: str) -> str:
    """host[:port] in lower case, the scheme's default port left out (`a.example:443` is `a.example`)."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return "\x00invalid"
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    return host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def check_origin(message: SiweMessage, origin: str) -> None:
    """The message's domain, scheme and URI all name `origin` (configured, never the request's)."""
    expected = urlsplit(origin)
    scheme = expected.scheme
    domain = _authority(scheme, expected.netloc)
    if _authority(scheme, message.domain) != domain or "@" in message.domain:
        raise SiweError("the message is for another domain")
    if message.scheme is not None and message.scheme != scheme:
        raise SiweError("the message is for another scheme")
    uri = urlsplit(message.uri)
    if uri.scheme.lower() != scheme or "@" in uri.netloc or _authority(scheme, uri.netloc) != domain:
        raise SiweError("the message's URI is not on this site")


def check_message(
    message: SiweMessage,
    *,
    origin: str,
    chain_ids: frozenset[int],
    leeway: timedelta,
    now: datetime | None = None,
) -> None:
    """Check origin (domain and URI), version, chain and times; raise SiweError naming the first problem."""
    now = now or datetime.now(UTC)
    check_origin(message, origin)
    if message.version != "1":
        raise SiweError("only version 1 messages are accepted")
    if message.chain_id not in chain_ids:
        raise SiweError("the chain id is not accepted")
    if not NONCE.match(message.nonce):
        raise SiweError("the nonce is malformed")
    if message.issued_at > now + leeway:
        raise SiweError("the message is issued in the future")
    if message.expiration_time is not None and message.expiration_time <= now - leeway:
        raise SiweError("the message has expired")
    if message.not_before is not None and message.not_before > now + leeway:
        raise SiweError("the message is not valid yet")


def recover_signer(text: str, signature: str) -> str:
    """The checksummed address that signed `text` (EIP-191 personal_sign)."""
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 65:
            raise ValueError("signature length")
        return str(Account.recover_message(encode_defunct(text=text), signature=raw))
    except Exception:  # eth-account raises several types for malformed signatures
        raise SiweError("the signature is malformed") from None


def issue_nonce(client: redis.Redis, *, ttl_s: int) -> str:
    """A fresh nonce, stored in Redis until used or `ttl_s` passes."""
    nonce = secrets.token_hex(16)
    client.set(NONCE_KEY + nonce, "1", ex=ttl_s)
    return nonce


def consume_nonce(client: redis.Redis, nonce: str) -> bool:
    """Use a nonce up: True exactly once per issued, unexpired nonce (DEL is atomic)."""
    return bool(client.delete(NONCE_KEY + nonce))


def build_message(
    *, domain: str, address: str, uri: str, chain_id: int, nonce: str, issued_at: datetime,
    statement: str | None = None, expiration_time: datetime | None = None,
) -> str:
    """An EIP-4361 message text (for clients and tests)."""
    parts = [f"{domain} wants you to sign in with your Ethereum account:", address, ""]
    parts += [statement, ""] if statement else [""]
    parts += [f"URI: {uri}", "Version: 1", f"Chain ID: {chain_id}", f"Nonce: {nonce}",
              f"Issued At: {issued_at.isoformat().replace('+00:00', 'Z')}"]
    if expiration_time is not None:
        parts.append(f"Expiration Time: {expiration_time.isoformat().replace('+00:00', 'Z')}")
    return "\n".join(parts)
