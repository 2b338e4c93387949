"""A local certificate authority and a loopback server certificate, for the secured Kafka
cluster that headwater runs on 127.0.0.1.

`ensure_certificates(folder)` writes, once, ca.pem (the CA certificate clients trust),
ca-key.pem, and server.pem (the server's private key, then its certificate and the CA's: a
PEM key store Kafka reads with ssl.keystore.type=PEM). Keys are unencrypted PKCS#8 in files
of mode 0600. Files that still verify are reused, so a restarted cluster keeps its identity
and the clients' trust.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streaming.errors import ServiceError

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1",)
VALID_DAYS = 825  # what browsers and most TLS stacks still accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Certificates:
    """Where the CA certificate, its key and the server's PEM key store are."""

    ca_cert: Path
    ca_key: Path
    server: Path


def ensure_certificates(folder: Path, common_name: str = "headwater") -> Certificates:
    """The CA and server certificate in `folder`, made now unless valid ones are there.

    Raises ServiceError when the folder cannot be written.
    """
    files = Certificates(folder / "ca.pem", folder / "ca-key.pem", folder / "server.pem")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        if _still_valid(files):
            return files
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, common_name)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _server_certificate(server_key, ca_key, ca_cert, common_name)
        write_file(files.ca_key, _key_pem(ca_key), secret=True)
        write_file(
            files.server,
            _key_pem(server_key) + _cert_pem(server_cert) + _cert_pem(ca_cert),
            secret=True,
        )
        write_file(files.ca_cert, _cert_pem(ca_cert), secret=False)
    except OSError as exc:
        raise ServiceError(
            f"could not write the cluster's certificates in {folder}: {exc.strerror}; "
            "check that the state directory is writable"
        ) from None
    return files


def _still_valid(files: Certificates) -> bool:
    """True when every file is there, readable, signed by that CA, and not about to expire."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        server_pem = files.server.read_bytes()
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        serialization.load_pem_private_key(server_pem, password=None)
        server = x509.load_pem_x509_certificates(server_pem)[0]
        server.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, IndexError, InvalidSignature):
        return False
    soon = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    same_ca = ca_key.public_key().public_numbers() == ca.public_key().public_numbers()  # type: ignore[union-attr]
    return same_ca and all(c.not_valid_after_utc > soon for c in (ca, server))


def _ca_certificate(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} local CA")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
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


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in LOOPBACK_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOOPBACK_ADDRESSES]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Brokers are TLS clients of each other too (inter-broker connections).
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"): the form Kafka's PEM key store reads without
    # a key password, so no password has to sit in the broker's config.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_file(path: Path, data: bytes, *, secret: bool) -> None:
    """Write `data` to `path` atomically; a secret file is 0600 from its first byte."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
