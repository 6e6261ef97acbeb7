"""What a game day run inside the lab's cluster needs from the lab: the Secrets the deploy base
names, in the harness's namespace.

``lab up`` makes them, so ``kubectl apply -k deploy/overlays/lab`` works on any lab: the lab's
S3 credentials (``flywheel-chaos-s3``), an identity of the lab's evidence store with its
SeaweedFS identity file (``flywheel-chaos-evidence-store``; random, kept in
``.lab/evidence-store.json``) and the lab's evidence signing key pair
(``flywheel-chaos-signing-key``). A Secret is applied from a 0600 file removed at once.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from subprocess import CompletedProcess
from typing import Final

import yaml

from harness.lab.paths import LabPaths
from harness.lab.seaweed import s3_identity_config
from harness.processes import write_private

__all__ = [
    "EVIDENCE_SECRET",
    "HARNESS_NAMESPACE",
    "SIGNING_SECRET",
    "STATE_SECRET",
    "apply_secret",
    "ensure_secrets",
    "evidence_credentials",
]

Kubectl = Callable[..., CompletedProcess[str]]

HARNESS_NAMESPACE: Final = "flywheel-chaos"
STATE_SECRET: Final = "flywheel-chaos-s3"
EVIDENCE_SECRET: Final = "flywheel-chaos-evidence-store"
SIGNING_SECRET: Final = "flywheel-chaos-signing-key"


def apply_secret(
    kubectl: Kubectl, paths: LabPaths, name: str, namespace: str, data: Mapping[str, bytes]
) -> None:
    """Apply Secret ``namespace/name`` holding ``data`` (never left on disk)."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
    manifest = paths.root / f"secret-{name}.yaml"
    write_private(manifest, yaml.safe_dump(secret))
    try:
        kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(manifest))
    finally:
        manifest.unlink()


def evidence_credentials(paths: LabPaths) -> dict[str, str]:
    """The lab evidence store's identity, made once."""
    path = paths.root / "evidence-store.json"
    if not path.exists():
        write_private(
            path,
            json.dumps(
                {
                    "access_key": "AKEVID" + secrets.token_hex(7).upper(),
                    "secret_key": secrets.token_urlsafe(30),
                }
            ),
        )
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def ensure_secrets(kubectl: Kubectl, paths: LabPaths, creds: Mapping[str, str]) -> None:
    """The three Secrets of the deploy base, from the lab's own credentials and keys."""
    evidence = evidence_credentials(paths)
    keys: Path = paths.root / "keys"
    apply_secret(
        kubectl,
        paths,
        STATE_SECRET,
        HARNESS_NAMESPACE,
        {"access-key": creds["access_key"].encode(), "secret-key": creds["secret_key"].encode()},
    )
    identity = s3_identity_config(evidence["access_key"], evidence["secret_key"])
    apply_secret(
        kubectl,
        paths,
        EVIDENCE_SECRET,
        HARNESS_NAMESPACE,
        {
            "access-key": evidence["access_key"].encode(),
            "secret-key": evidence["secret_key"].encode(),
            "s3.json": json.dumps(identity).encode(),
        },
    )
    apply_secret(
        kubectl,
        paths,
        SIGNING_SECRET,
        HARNESS_NAMESPACE,
        {
            "evidence.key": (keys / "evidence.key").read_bytes(),
            "evidence.pub": (keys / "evidence.pub").read_bytes(),
        },
    )
