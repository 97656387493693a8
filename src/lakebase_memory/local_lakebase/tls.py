"""The proxy's self-signed TLS certificate, generated once into the data folder."""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=7)


def ensure_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) files in `folder`, made if missing or about to expire."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    if cert_file.exists() and key_file.exists() and not _expiring(cert_file):
        return cert_file, key_file
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local-lakebase")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key_bytes)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    # PostgreSQL 17+ servers announce ALPN "postgresql"; libpq accepts it either way.
    context.set_alpn_protocols(["postgresql"])
    return context


def _expiring(cert_file: Path) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError:
        return True
    return certificate.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE
