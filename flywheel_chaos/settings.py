"""Every ``FLYWHEEL_*`` and ``TOFU_*`` variable, documented once (as kopf's configuration is).

A :class:`Variable` names the variable, its default and what it means; code reads a value
with ``SETTING.get()`` (or :func:`from_config`, which lets an experiment's ``configuration``
block win over the environment), never with a literal name. ``docs/configuration.md`` lists
:data:`ALL`, and a test keeps the two and the code in step. The ``AWS_*`` variables and
``KUBECONFIG`` are the ones boto3, OpenTofu and kubectl read; they are not ours to define.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variable:
    """One environment variable of the contract."""

    name: str
    default: str
    doc: str
    internal: bool = False
    """Set by the harness for the processes it runs, not by operators."""

    def get(self, environ: Mapping[str, str] | None = None) -> str:
        """The value in ``environ`` (default: the process environment), else the default."""
        value = (os.environ if environ is None else environ).get(self.name, "")
        return value or self.default

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return bool((os.environ if environ is None else environ).get(self.name))


ALL: list[Variable] = []


def _var(name: str, default: str, doc: str, internal: bool = False) -> Variable:
    variable = Variable(name, default, doc, internal)
    ALL.append(variable)
    return variable


# ------------------------------------------------------------- the target ---
TOFU_STATE_BUCKET = _var("TOFU_STATE_BUCKET", "tofu-state", "the state bucket")
TOFU_STATE_KEY = _var("TOFU_STATE_KEY", "", "a protected state key, only ever read (HEAD)")
TOFU_STATE_BACKUP_BUCKET = _var(
    "TOFU_STATE_BACKUP_BUCKET",
    "",
    "where the backup job copies the state key (default <bucket>-backup)",
)
TOFU_STATE_BACKUP_KEY = _var(
    "TOFU_STATE_BACKUP_KEY", "", "the backup copy's key (default: the state key's own)"
)
TOFU_STACK_DIR = _var(
    "TOFU_STACK_DIR", "", "a protected OpenTofu stack directory that stack_noop_plan plans"
)
FLYWHEEL_TOFU = _var("FLYWHEEL_TOFU", "", "the tofu binary (default: the lab's, then PATH)")
FLYWHEEL_TOFU_PLAN_STACK = _var(
    "FLYWHEEL_TOFU_PLAN_STACK",
    "",
    "an initialized stack whose backend is the state key: tofu plan runs in a loop during faults",
)
FLYWHEEL_S3_TIMEOUT_S = _var("FLYWHEEL_S3_TIMEOUT_S", "5", "one S3 check's deadline, seconds")
FLYWHEEL_STATE_NAMESPACE = _var(
    "FLYWHEEL_STATE_NAMESPACE", "nix-cache", "the state authority's namespace"
)
FLYWHEEL_STATE_DEPLOYMENT = _var(
    "FLYWHEEL_STATE_DEPLOYMENT",
    "attic-rustfs-openebs",
    "the state authority's workload (a Deployment or StatefulSet of that name)",
)
FLYWHEEL_STATE_PART_OF = _var(
    "FLYWHEEL_STATE_PART_OF",
    "tofu-state-authority",
    "the app.kubernetes.io/part-of label of the authority's other workloads (replicated servers)",
)
FLYWHEEL_STATE_SELECTOR = _var(
    "FLYWHEEL_STATE_SELECTOR",
    "",
    "label selector of the state authority's pods (lab faults: which pods serve S3)",
)

# ------------------------------------------------------------ the safety ---
FLYWHEEL_NODE_ALLOWLIST = _var(
    "FLYWHEEL_NODE_ALLOWLIST", "", "comma-separated nodes a fault may touch (unset: none)"
)
FLYWHEEL_TARGET_NODE = _var(
    "FLYWHEEL_TARGET_NODE",
    "bumble",
    "the node the node experiments drain, stop or crash (the allowlist still gates it)",
)
FLYWHEEL_NAMESPACE_ALLOWLIST = _var(
    "FLYWHEEL_NAMESPACE_ALLOWLIST", "", "comma-separated namespaces a fault may touch (unset: none)"
)
FLYWHEEL_STATE_DIR = _var(
    "FLYWHEEL_STATE_DIR", ".flywheel", "local run state: rollback intent files, tracebacks"
)
FLYWHEEL_LEASE_NAMESPACE = _var(
    "FLYWHEEL_LEASE_NAMESPACE", "kube-system", "namespace of the one-experiment-at-a-time Lease"
)
FLYWHEEL_LEASE_IDENTITY = _var(
    "FLYWHEEL_LEASE_IDENTITY",
    "",
    "the game day's lease holder, handed to each of its chaos runs",
    internal=True,
)
FLYWHEEL_LEASE_HOLDER = _var(
    "FLYWHEEL_LEASE_HOLDER", "", "the holder identity this run's actions check", internal=True
)
FLYWHEEL_RUN_ID = _var(
    "FLYWHEEL_RUN_ID", "", "the id of the run a process belongs to", internal=True
)
FLYWHEEL_RUN_REFUSED = _var(
    "FLYWHEEL_RUN_REFUSED", "", "why this run may not mutate (lease lost or refused)", internal=True
)

# ------------------------------------------------------------- the faults ---
FLYWHEEL_NODE_FAULT_METHOD = _var(
    "FLYWHEEL_NODE_FAULT_METHOD",
    "kubelet-stop",
    "how a node is lost: kubelet-stop, command, lab-freeze, lab-crash",
)
FLYWHEEL_NODE_CRASH_METHOD = _var(
    "FLYWHEEL_NODE_CRASH_METHOD", "lab-crash", "node-crash.yaml's method: lab-crash or command"
)
FLYWHEEL_NODE_FAULT_DURATION_S = _var(
    "FLYWHEEL_NODE_FAULT_DURATION_S", "60", "seconds a kubelet-stop keeps the kubelet down"
)
FLYWHEEL_NODE_STOP_COMMAND = _var(
    "FLYWHEEL_NODE_STOP_COMMAND", "", "method command: the stop command ({node} is replaced)"
)
FLYWHEEL_NODE_START_COMMAND = _var(
    "FLYWHEEL_NODE_START_COMMAND", "", "method command: the start command ({node} is replaced)"
)
FLYWHEEL_MAX_BACKUP_AGE_S = _var(
    "FLYWHEEL_MAX_BACKUP_AGE_S", "", "backup-restore.yaml: the oldest backup copy accepted"
)

# ----------------------------------------------------------- the evidence ---
FLYWHEEL_EVIDENCE_DIR = _var("FLYWHEEL_EVIDENCE_DIR", "evidence", "where evidence is written")
FLYWHEEL_EVIDENCE_URL = _var(
    "FLYWHEEL_EVIDENCE_URL", "", "evidence store s3://bucket/prefix (never the state bucket)"
)
FLYWHEEL_EVIDENCE_ENDPOINT_URL = _var(
    "FLYWHEEL_EVIDENCE_ENDPOINT_URL", "", "the evidence store's endpoint (else AWS_ENDPOINT_URL_S3)"
)
FLYWHEEL_EVIDENCE_REGION = _var(
    "FLYWHEEL_EVIDENCE_REGION", "", "the evidence store's region (else AWS_REGION)"
)
FLYWHEEL_EVIDENCE_ACCESS_KEY_ID = _var(
    "FLYWHEEL_EVIDENCE_ACCESS_KEY_ID", "", "the evidence store's key id (else AWS_ACCESS_KEY_ID)"
)
FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY = _var(
    "FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY",
    "",
    "the evidence store's secret (else AWS_SECRET_ACCESS_KEY); never recorded",
)
FLYWHEEL_EVIDENCE_SIGNING_KEY = _var(
    "FLYWHEEL_EVIDENCE_SIGNING_KEY", "", "path of the Ed25519 private key records are signed with"
)
FLYWHEEL_EVIDENCE_PUBLIC_KEY = _var(
    "FLYWHEEL_EVIDENCE_PUBLIC_KEY", "", "path of the public key verify and the gate check with"
)
FLYWHEEL_GAMEDAY_SUITE = _var(
    "FLYWHEEL_GAMEDAY_SUITE", "weekly", "gameday's suite: a file or a shipped suite's name"
)
FLYWHEEL_GAMEDAY_RUNS = _var(
    "FLYWHEEL_GAMEDAY_RUNS",
    "",
    "gameday's runs of each experiment: a number or policy (default: the suite's runs)",
)
FLYWHEEL_NOTIFY_URL = _var(
    "FLYWHEEL_NOTIFY_URL",
    "",
    "a Slack-compatible webhook for one game day summary (a secret: never recorded)",
)
FLYWHEEL_GATE_POLICY = _var(
    "FLYWHEEL_GATE_POLICY", "", "the gate policy file (default: the shipped gate.yaml)"
)

# ---------------------------------------------------------------- the RCA ---
FLYWHEEL_RCA_DISK_VIEW = _var(
    "FLYWHEEL_RCA_DISK_VIEW", "auto", "how the RCA reads volumes: auto, lab, debug-pod, off"
)
FLYWHEEL_RCA_HELPER_NAMESPACE = _var(
    "FLYWHEEL_RCA_HELPER_NAMESPACE", "flywheel-chaos", "namespace of the RCA's debug pods"
)
FLYWHEEL_RCA_DEBUG_IMAGE = _var(
    "FLYWHEEL_RCA_DEBUG_IMAGE", "docker.io/library/busybox:1.36", "the RCA debug pod's image"
)
FLYWHEEL_KUBELET_ROOT = _var(
    "FLYWHEEL_KUBELET_ROOT", "/var/lib/kubelet", "the kubelet's root directory on the nodes"
)
FLYWHEEL_DISK_ENTRIES = _var(
    "FLYWHEEL_DISK_ENTRIES", "5000", "most entries a disk listing holds", internal=True
)
FLYWHEEL_HASH_LIMIT = _var(
    "FLYWHEEL_HASH_LIMIT", "1048576", "largest metadata file a disk listing hashes", internal=True
)

# ---------------------------------------------------------------- the lab ---
FLYWHEEL_LAB_DIR = _var("FLYWHEEL_LAB_DIR", "", "the lab's directory (lab commands: .lab)")
FLYWHEEL_LAB_PORT_OFFSET = _var(
    "FLYWHEEL_LAB_PORT_OFFSET", "0", "moves every port of the default lab"
)


def from_config(
    configuration: Mapping[str, Any] | None, key: str, variable: Variable, default: str = ""
) -> str:
    """An experiment's ``configuration[key]``, else ``variable`` from the environment."""
    value = (configuration or {}).get(key)
    if value not in (None, ""):
        return str(value)
    return os.environ.get(variable.name, "") or default or variable.default


def list_from_config(
    configuration: Mapping[str, Any] | None, key: str, variable: Variable
) -> list[str]:
    """A comma-separated (or list) setting: ``configuration[key]``, else ``variable``."""
    raw = (configuration or {}).get(key)
    if raw is None:
        raw = os.environ.get(variable.name, "")
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return [str(item) for item in raw]


def state_dir() -> Path:
    """:data:`FLYWHEEL_STATE_DIR`, absolute."""
    return Path(FLYWHEEL_STATE_DIR.get()).resolve()
