"""The guard over HTTPS: it connects to the address it checked, but the TLS handshake names the host
(SNI) and the certificate is verified against the name, not the address."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.outbound import OutboundPolicy, OutboundRefused, guarded_request
from tests.support.network_guard import NetworkGuard, network_guard
from tests.support.web_origin import WebOrigin, body, web_origin

LOCAL = OutboundPolicy(max_bytes=10_000, timeout_s=5.0, allow_loopback=True)


def _certificate(
    subject: str,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def secure_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebOrigin]:
    """An HTTPS origin whose certificate names `secure.test`, signed by a CA this test trusts."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditflow test CA")])
    ca = _certificate("creditflow test CA", ca_name, ca_key, ca_key, ca=True)
    leaf = _certificate("secure.test", ca_name, ca_key, leaf_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # httpx's transport trusts it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    with web_origin(tls=context) as origin:
        origin.answers["/cat.png"] = body(b"\x89PNG-bytes", "image/png")
        yield origin


def test_https_names_the_host_in_sni_and_verifies_the_certificate_against_it(
    secure_origin: WebOrigin,
) -> None:
    guard: NetworkGuard
    with network_guard() as guard:
        guard.map("secure.test", "127.0.0.1")
        guard.map("impostor.test", "127.0.0.1")
        answer = guarded_request("GET", secure_origin.url("/cat.png", "secure.test"), policy=LOCAL)
        assert (answer.status, answer.body) == (200, b"\x89PNG-bytes")
        assert secure_origin.server_names == ["secure.test"]
        assert secure_origin.requests[-1][2]["host"] == f"secure.test:{secure_origin.port}"
        # Same address, another name: the certificate does not name it, so nothing is fetched.
        with pytest.raises(OutboundRefused) as caught:
            guarded_request("GET", secure_origin.url("/cat.png", "impostor.test"), policy=LOCAL)
        assert caught.value.reason == "unreachable"
        assert len(secure_origin.requests) == 1
        assert guard.connects == ["127.0.0.1", "127.0.0.1"]
        assert guard.lookups == ["secure.test", "impostor.test"]
