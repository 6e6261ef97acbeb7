"""``.lab/env``: the ``export`` lines that point ``chaos`` and ``flywheel-chaos`` at the lab."""

from __future__ import annotations

import shlex

from flywheel_chaos import settings
from harness.lab.paths import NODES, LabPaths
from harness.lab.seed import BACKUP_BUCKET, STATE_BUCKET, STATE_KEY
from harness.lab.topology import STATE_NAMESPACE
from harness.processes import write_private


def values(paths: LabPaths, endpoint: str, creds: dict[str, str]) -> dict[str, str]:
    return {
        "KUBECONFIG": str(paths.kubeconfig),
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        settings.TOFU_STATE_BUCKET.name: STATE_BUCKET,
        settings.TOFU_STATE_KEY.name: STATE_KEY,
        settings.TOFU_STATE_BACKUP_BUCKET.name: BACKUP_BUCKET,
        settings.FLYWHEEL_EVIDENCE_DIR.name: str(paths.root.parent / "evidence"),
        settings.FLYWHEEL_LAB_DIR.name: str(paths.root),
        settings.FLYWHEEL_STATE_DIR.name: str(paths.root.parent / ".flywheel"),
        # the lab's own evidence key pair (lab up makes it): records are signed and checked
        settings.FLYWHEEL_EVIDENCE_SIGNING_KEY.name: str(paths.root / "keys" / "evidence.key"),
        settings.FLYWHEEL_EVIDENCE_PUBLIC_KEY.name: str(paths.root / "keys" / "evidence.pub"),
        # the experiments ship no allowlist: the lab allows its own nodes and namespace
        settings.FLYWHEEL_NODE_ALLOWLIST.name: ",".join(NODES),
        settings.FLYWHEEL_NAMESPACE_ALLOWLIST.name: STATE_NAMESPACE,
    }


def lines(paths: LabPaths, endpoint: str, creds: dict[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in values(paths, endpoint, creds).items()]


def write(paths: LabPaths, endpoint: str, creds: dict[str, str]) -> None:
    text = "# written by flywheel-chaos lab up: source it, then run chaos or flywheel-chaos\n"
    write_private(paths.env_file, text + "\n".join(lines(paths, endpoint, creds)) + "\n")


def read(paths: LabPaths) -> dict[str, str]:
    """The variables ``.lab/env`` exports (empty when the lab never came up)."""
    found: dict[str, str] = {}
    try:
        text = paths.env_file.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found
