"""Checkpoint signatures: Ed25519 (a PEM private key) or HMAC-SHA256 (`hmac:<secret>`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"


@dataclass(frozen=True)
class Verifier:
    """Checks checkpoint signatures; holds only public material for Ed25519."""

    algorithm: str
    key_id: str
    _public: Ed25519PublicKey | None = None
    _secret: bytes | None = None

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's signature of `message`."""
        if self._public is not None:
            try:
                self._public.verify(signature, message)
            except InvalidSignature:
                return False
            return True
        assert self._secret is not None
        expected = hmac.new(self._secret, message, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)

    def public_key_pem(self) -> str | None:
        """The PEM public key a client needs to check proofs (None for HMAC)."""
        if self._public is None:
            return None
        pem = self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode()


@dataclass(frozen=True)
class Signer:
    """Signs checkpoints with a key that lives in settings, never in the database."""

    verifier: Verifier
    _private: Ed25519PrivateKey | None = None
    _secret: bytes | None = None

    @property
    def algorithm(self) -> str:
        """`ed25519` or `hmac-sha256`."""
        return self.verifier.algorithm

    @property
    def key_id(self) -> str:
        """A short fingerprint of the verification key, stored with each checkpoint."""
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        """The signature of `message`."""
        if self._private is not None:
            return self._private.sign(message)
        assert self._secret is not None
        return hmac.new(self._secret, message, hashlib.sha256).digest()


def _ed25519_verifier(public: Ed25519PublicKey) -> Verifier:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Verifier(ED25519, hashlib.sha256(raw).hexdigest()[:16], _public=public)


def _hmac_secret(key: str) -> bytes:
    secret = key.removeprefix("hmac:").encode()
    if len(secret) < 16:
        raise ValueError("an HMAC ledger key needs at least 16 bytes of secret")
    return secret


def _hmac_key_id(secret: bytes) -> str:
    return hashlib.sha256(b"creditflow.key-id|" + secret).hexdigest()[:16]


def signer_from_key(key: str) -> Signer:
    """A signer from LEDGER_SIGNING_KEY: a PEM Ed25519 private key or `hmac:<secret>`."""
    if key.startswith("hmac:"):
        secret = _hmac_secret(key)
        return Signer(Verifier(HMAC_SHA256, _hmac_key_id(secret), _secret=secret), _secret=secret)
    private = serialization.load_pem_private_key(key.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError("the ledger signing key must be Ed25519 (PEM) or hmac:<secret>")
    return Signer(_ed25519_verifier(private.public_key()), _private=private)


def verifier_from_key(key: str) -> Verifier:
    """A verifier from a PEM public key, a PEM private key (its public half) or `hmac:<secret>`."""
    if key.startswith("hmac:") or "PRIVATE KEY" in key:
        return signer_from_key(key).verifier
    public = serialization.load_pem_public_key(key.encode())
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError("the ledger verification key must be an Ed25519 public key")
    return _ed25519_verifier(public)
