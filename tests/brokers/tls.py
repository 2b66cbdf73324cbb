"""Throw-away TLS material for test brokers, made with ``cryptography``.

``make_certificates(directory)`` writes PEM files and returns their paths:

- ``ca_cert``: a self-signed test CA (``basicConstraints CA:TRUE``); clients trust this file;
- ``server_cert`` / ``server_key``: a server certificate for ``localhost``, ``127.0.0.1`` and
  ``::1`` (subjectAltName DNS and IP entries) signed by that CA, and its private key
  (unencrypted PKCS#8);
- ``other_ca_cert``: a second, unrelated CA; a client that trusts only it must fail the
  certificate verification against the server (the "untrusted certificate" case).

The keys are EC P-256 (quick to generate; both Java's TLS stack and Python's ``ssl`` take them)
and the certificates are valid for two days from an hour ago, which is plenty for a test run.
The extensions are the ones a strict verifier asks for (key usages, subject/authority key
identifiers), so Python's ``VERIFY_X509_STRICT`` accepts them as well.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files written by ``make_certificates``."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shuangjian tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    # An hour back, so a clock a little behind ours still accepts the certificate.
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    return start, start + VALID_FOR


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san_entry(h) for h in hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certificates(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> TlsFiles:
    """Write a test CA, a server certificate and key for ``hosts``, and an unrelated CA.

    The files are ``ca.pem``, ``server.pem``, ``server-key.pem`` and ``other-ca.pem`` in
    ``directory`` (created if missing); existing files of those names are overwritten.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca("Shuangjian test CA")
    server_key, server_cert = _make_server_cert(ca_key, ca_cert, hosts)
    _, other_ca_cert = _make_ca("Unrelated test CA")

    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        other_ca_cert=directory / "other-ca.pem",
    )
    files.ca_cert.write_bytes(_cert_pem(ca_cert))
    files.server_cert.write_bytes(_cert_pem(server_cert))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.server_key.chmod(0o600)
    files.other_ca_cert.write_bytes(_cert_pem(other_ca_cert))
    return files
