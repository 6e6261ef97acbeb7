"""Ed25519 signatures of evidence records and of the evidence store's chain head.

A signing key is configured with ``FLYWHEEL_EVIDENCE_SIGNING_KEY``: the path
of a PEM (PKCS#8) private key, or ``k8s:NAMESPACE/SECRET[/KEY]`` for a
Kubernetes Secret holding one (key ``signing-key.pem`` by default). The
public key (PEM) is given to ``evidence verify --public-key`` and the gate
(``--public-key`` or ``FLYWHEEL_EVIDENCE_PUBLIC_KEY``). ``flywheel-chaos
evidence keygen`` writes a pair; the private key file is created 0600.

What is signed is the record's ``record_sha256`` (hex, ASCII): the SHA-256
of every other field, so a signature covers every byte that matters.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from flywheel_chaos import settings
from harness.errors import ConfigError

SIGNING_KEY_ENV = settings.FLYWHEEL_EVIDENCE_SIGNING_KEY.name
PUBLIC_KEY_ENV = settings.FLYWHEEL_EVIDENCE_PUBLIC_KEY.name
ALGORITHM = "ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """Signs with one private key."""

    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, message: str) -> dict[str, str]:
        value = self.private.sign(message.encode("ascii"))
        return {
            "alg": ALGORITHM,
            "key_id": self.key_id,
            "value": base64.b64encode(value).decode("ascii"),
        }


@dataclass(frozen=True)
class Verifier:
    """Checks signatures against one public key."""

    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def problem(self, message: str, signature: object) -> str | None:
        """None when ``signature`` is a valid signature of ``message``, else what is wrong."""
        if not isinstance(signature, dict):
            return "not signed"
        if signature.get("alg") != ALGORITHM:
            return f"signature algorithm {signature.get('alg')!r} is not {ALGORITHM}"
        if signature.get("key_id") != self.key_id:
            return f"signed by key {signature.get('key_id')}, not {self.key_id}"
        try:
            self.public.verify(base64.b64decode(str(signature.get("value"))), message.encode())
        except (InvalidSignature, ValueError):
            return "signature does not match"
        return None


def generate(directory: Path, name: str = "evidence") -> tuple[Path, Path]:
    """Write a new pair: ``NAME.key`` (0600, created so) and ``NAME.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} already exists", "choose another --out or remove it first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def _private_from_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where} is not a PEM private key", "make one with flywheel-chaos evidence keygen"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where} is not an Ed25519 key", "make one with evidence keygen")
    return key


def _secret_bytes(reference: str) -> bytes:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from flywheel_chaos.kube.client import API_TIMEOUT, api_client

    parts = reference.removeprefix("k8s:").split("/")
    if len(parts) not in (2, 3):
        raise ConfigError(
            f"{SIGNING_KEY_ENV}={reference!r} is not k8s:NAMESPACE/SECRET[/KEY]",
            "or give the path of a PEM file",
        )
    namespace, name = parts[0], parts[1]
    item = parts[2] if len(parts) == 3 else "signing-key.pem"
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(
            name, namespace, _request_timeout=API_TIMEOUT
        )
    except ApiException as exc:
        raise ConfigError(
            f"cannot read the signing key Secret {namespace}/{name}: {exc.status} {exc.reason}",
            "check the Secret and the identity's get permission on it",
        ) from exc
    data = (secret.data or {}).get(item)
    if not data:
        raise ConfigError(f"Secret {namespace}/{name} has no key {item!r}", "see evidence keygen")
    return base64.b64decode(data)


def load_signer(reference: str | None = None) -> Signer | None:
    """The configured signer (None when no key is configured)."""
    ref = reference if reference is not None else settings.FLYWHEEL_EVIDENCE_SIGNING_KEY.get()
    if not ref:
        return None
    if ref.startswith("k8s:"):
        return Signer(_private_from_pem(_secret_bytes(ref), f"Secret {ref}"))
    path = Path(ref).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the signing key {path}: {exc.strerror}",
            f"set {SIGNING_KEY_ENV} to a key made by flywheel-chaos evidence keygen",
        ) from exc
    return Signer(_private_from_pem(data, str(path)))


def load_verifier(path: str | Path | None = None) -> Verifier | None:
    """The verifier for ``path`` or ``FLYWHEEL_EVIDENCE_PUBLIC_KEY`` (None when neither is set)."""
    ref = str(path) if path else settings.FLYWHEEL_EVIDENCE_PUBLIC_KEY.get()
    if not ref:
        return None
    try:
        key = serialization.load_pem_public_key(Path(ref).expanduser().read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the public key {ref}: {exc.strerror}", "see evidence keygen"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{ref} is not a PEM public key", "see evidence keygen") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{ref} is not an Ed25519 public key", "see evidence keygen")
    return Verifier(key)
