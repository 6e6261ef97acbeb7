"""Certificates and kubeconfigs for the lab's control plane (made once, kept in ``.lab/pki``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.lab.paths import SLOTS
from harness.processes import write_private

# who signs in as what: (file stem, common name, organisation)
CLIENTS: tuple[tuple[str, str, str | None], ...] = (
    ("admin", "flywheel-admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", None),
    ("scheduler", "system:kube-scheduler", None),
    ("node-agent", "flywheel-node-agent", "system:masters"),
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVER_IPS = (
    "127.0.0.1",
    # the ``kubernetes`` Service of every lab slot (10.(96+slot).0.1) and the loopback twin a
    # pod's in-cluster configuration reaches it at through the service proxy
    *(f"{net}.{96 + slot}.0.1" for slot in range(SLOTS) for net in ("10", "127")),
)


def _lacks_server_names(path: Path) -> bool:
    """A serving certificate made before the lab served in-cluster clients (reissued)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return not set(SERVER_IPS) <= have


def _ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The lab's CA, created once."""
    ca_cert_path, ca_key_path = directory / "ca.crt", directory / "ca.key"
    if not ca_cert_path.exists():
        ca_key = _key()
        usage = x509.KeyUsage(
            digital_signature=True,
            key_cert_sign=True,
            crl_sign=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("flywheel-lab-ca"))
            .issuer_name(_name("flywheel-lab-ca"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now())
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_private(ca_key_path, _pem_key(ca_key))
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded, x509.load_pem_x509_certificate(ca_cert_path.read_bytes())


def _issue(
    directory: Path,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    stem: str,
    subject: x509.Name,
    server: bool,
) -> None:
    """A certificate ``stem``.crt signed by the lab's CA, created once."""
    existing = directory / f"{stem}.crt"
    if existing.exists() and not (server and _lacks_server_names(existing)):
        return
    ca_key, ca_cert = ca
    key = _key()
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_private(directory / f"{stem}.key", _pem_key(key))
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(directory: Path) -> None:
    """Create the CA, the API server's serving cert, client certs and the SA key if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _ca(directory)
    _issue(directory, ca, "apiserver", _name("kube-apiserver"), server=True)
    for stem, common, org in CLIENTS:
        _issue(directory, ca, stem, _name(common, org), server=False)
    if not (directory / "sa.key").exists():
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(directory / "sa.key", _pem_key(sa_key))
        (directory / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def write_kubeconfig(path: Path, server: str, pki: Path, client: str) -> None:
    """A kubeconfig for ``client`` (a stem of :data:`CLIENTS`) with absolute file paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "flywheel-lab",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": client,
                "user": {
                    "client-certificate": str(pki / f"{client}.crt"),
                    "client-key": str(pki / f"{client}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "flywheel-lab", "context": {"cluster": "flywheel-lab", "user": client}}
        ],
        "current-context": "flywheel-lab",
    }
    write_private(path, yaml.safe_dump(document, sort_keys=False))
