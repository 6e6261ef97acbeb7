"""The disk view of the state authority's volumes: what is on them, never what is in them.

Used by the RCA collector and the lab's node agent. A listing is one line per
entry, tab-separated, the same whoever writes it::

    d  <volume>/<path>                       a directory
    f  <size>  <sha256 or ->  <volume>/<path>   a file (metadata files hashed)
    missing  <volume>                        a volume that is not there
    cut  <limit>                             the entry limit was reached
    end                                      the listing is complete

:func:`list_volumes` writes it from directories this process can read (the
lab's node volume directories). On a real cluster a **read-only debug pod**
on the volume's node writes it with :data:`SCRIPT` (``sh``, ``find``, ``stat``,
``sha256sum``: busybox has them), an opt-in (``FLYWHEEL_RCA_DISK_VIEW=debug-pod``):

* a claim a running pod uses (the server's) is read through the node, never
  mounted a second time (ReadWriteOncePod forbids that, and drivers such as
  ZFS-LocalPV refuse a second mount of a volume whose class is not shared): a
  read-only ``hostPath`` of the volume's node copy (a ``local`` or ``hostPath``
  volume's own path; a CSI volume's publish directory
  ``<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount`` of the
  pod that uses it), which needs the privileged opt-in namespace of
  ``deploy/components/node-fault``;
* a claim nobody uses (a drained server's volume while its replacement is
  Pending) is mounted read-only by a pod in the state authority's namespace on
  the volume's node.

The pod runs as root without privilege escalation, all capabilities dropped
but ``DAC_OVERRIDE`` (to read files the server owns), a read-only root file
system, no service account token, every volume read-only; it tolerates every
taint (the node may be cordoned or unreachable), has an active deadline, and
is deleted when its listing is read or its deadline passed. The lab's node
agent recognises it by :data:`LABEL` and writes the listing as the script
would (:func:`list_volumes`), as it does for the kubelet-stop helper.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import settings
from flywheel_chaos.kube.client import API_TIMEOUT

__all__ = [
    "CONTAINER",
    "LABEL",
    "LABEL_VALUE",
    "MOUNT_ROOT",
    "SCRIPT",
    "DebugPod",
    "Listing",
    "Mount",
    "api_log",
    "delete",
    "list_volumes",
    "manifest",
    "parse",
    "plan",
    "pod_name",
    "run",
]

LABEL = "flywheel-chaos.io/rca"
LABEL_VALUE = "disk-view"
MOUNT_ROOT = "/flywheel-disk"
CONTAINER = "list"
"""The debug pod's one container, whose log is the listing."""
METADATA_NAMES = (".metadata.bin", "xl.meta", "format.json", ".bucket.meta", "part.1")
"""Files hashed (SHA-256) when small enough: metadata, never object contents read out."""
ENTRIES = int(settings.FLYWHEEL_DISK_ENTRIES.default)
HASH_LIMIT = int(settings.FLYWHEEL_HASH_LIMIT.default)
LOG_LIMIT_BYTES = 4 * 1024 * 1024
KUBELET_ROOT = settings.FLYWHEEL_KUBELET_ROOT.default
DEFAULT_IMAGE = settings.FLYWHEEL_RCA_DEBUG_IMAGE.default

SCRIPT = r"""
root="$1"; shift
cd "$root" || { printf 'error\tcannot enter %s\n' "$root"; exit 3; }
limit="${FLYWHEEL_DISK_ENTRIES:-5000}"; hash_limit="${FLYWHEEL_HASH_LIMIT:-1048576}"
present=""
for v in "$@"; do
  if [ -d "$v" ]; then present="$present $v"; else printf 'missing\t%s\n' "$v"; fi
done
[ -n "$present" ] || { printf 'end\n'; exit 0; }
find $present -xdev -mindepth 1 \( -type d -o -type f \) 2>/dev/null | {
  n=0
  while IFS= read -r p; do
    n=$((n + 1))
    if [ "$n" -gt "$limit" ]; then printf 'cut\t%s\n' "$limit"; break; fi
    if [ -d "$p" ]; then printf 'd\t%s\n' "$p"; continue; fi
    s=$(stat -c %s "$p" 2>/dev/null || echo 0); h=-
    case "${p##*/}" in
      @METADATA_NAMES@)
        if [ "$s" -le "$hash_limit" ]; then h=$(sha256sum "$p" | cut -d ' ' -f 1); fi ;;
    esac
    printf 'f\t%s\t%s\t%s\n' "$s" "$h" "$p"
  done
}
printf 'end\n'
""".replace("@METADATA_NAMES@", "|".join(METADATA_NAMES))
"""The debug pod's command: ``sh -c SCRIPT sh <root> <volume>...``; volume names have no
spaces (they are PersistentVolume names)."""


# ----------------------------------------------------------------- listing ---


def list_volumes(
    volumes: dict[str, Path], limit: int = ENTRIES, hash_limit: int = HASH_LIMIT
) -> str:
    """The listing :data:`SCRIPT` writes, of each volume name's directory, read from here.

    Like ``find -xdev`` without ``-L``: symbolic links are not followed, nor
    other file systems mounted below a volume.
    """
    lines: list[str] = []
    count = 0
    present = {}
    for name, top in volumes.items():
        if top.is_dir():
            present[name] = top
        else:
            lines.append(f"missing\t{name}")
    for volume, top in present.items():
        device = top.stat().st_dev
        for directory, dirs, files in os.walk(top):
            here = Path(directory)
            dirs[:] = sorted(
                d
                for d in dirs
                if not (here / d).is_symlink() and (here / d).lstat().st_dev == device
            )
            names = [(d, True) for d in dirs] + [
                (f, False)
                for f in sorted(files)
                if (here / f).is_file() and not (here / f).is_symlink()
            ]
            for name, is_dir in names:
                count += 1
                if count > limit:
                    lines += [f"cut\t{limit}", "end"]
                    return "\n".join(lines) + "\n"
                path = here / name
                relative = f"{volume}/{path.relative_to(top)}"
                if is_dir:
                    lines.append(f"d\t{relative}")
                    continue
                size = path.stat().st_size
                digest = "-"
                if name in METADATA_NAMES and size <= hash_limit:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                lines.append(f"f\t{size}\t{digest}\t{relative}")
    lines.append("end")
    return "\n".join(lines) + "\n"


@dataclass
class Listing:
    """A parsed listing: entries by volume-relative path."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    cut: bool = False
    complete: bool = False
    errors: list[str] = field(default_factory=list)


def parse(text: str) -> Listing:
    """Read a listing; entries sorted by path, an unknown line kept as an error."""
    listing = Listing()
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "d" and rest:
            listing.entries.append({"path": rest, "dir": True})
        elif kind == "f" and rest.count("\t") >= 2:
            size, digest, path = rest.split("\t", 2)
            entry: dict[str, Any] = {"path": path, "dir": False, "size": int(size)}
            if digest != "-":
                entry["sha256"] = digest
            listing.entries.append(entry)
        elif kind == "missing":
            listing.missing.append(rest)
        elif kind == "cut":
            listing.cut = True
        elif kind == "end":
            listing.complete = True
        elif line.strip():
            listing.errors.append(line[:300])
    listing.entries.sort(key=lambda e: str(e["path"]))
    return listing


# -------------------------------------------------------------------- plan ---


@dataclass(frozen=True)
class Mount:
    """One volume the debug pod reads: by its claim, or by its path on the node."""

    volume: str  # the PersistentVolume's name: the directory under MOUNT_ROOT
    claim: str
    host_path: str = ""  # set: read through hostPath (ReadWriteOncePod), else mount the claim


@dataclass(frozen=True)
class DebugPod:
    namespace: str
    node: str
    mounts: tuple[Mount, ...]


def _affinity_node(volume: Any, nodes: set[str]) -> str:
    """The one node a volume's node affinity names (``In`` with a single node name)."""
    required = volume.spec.node_affinity.required if volume.spec.node_affinity else None
    for term in (required.node_selector_terms or []) if required else []:
        for expression in term.match_expressions or []:
            values = expression.values or []
            if expression.operator == "In" and len(values) == 1 and values[0] in nodes:
                return str(values[0])
    return ""


def _node_path(volume: Any, user: Any, kubelet_root: str) -> str:
    """Where the node shows ``volume`` while ``user`` runs there ("" when it cannot say)."""
    if volume.spec.local is not None:
        return str(volume.spec.local.path)
    if volume.spec.host_path is not None:
        return str(volume.spec.host_path.path)
    if volume.spec.csi is not None:
        return (
            f"{kubelet_root}/pods/{user.metadata.uid}/volumes/kubernetes.io~csi/"
            f"{volume.metadata.name}/mount"
        )
    return ""


def plan(
    namespace: str,
    claims: list[Any],
    volumes: dict[str, Any],
    pods: list[Any],
    nodes: set[str],
    helper_namespace: str,
    kubelet_root: str = KUBELET_ROOT,
) -> tuple[list[DebugPod], list[str]]:
    """The debug pods that can read each claim's volume, and a note for each that cannot.

    A claim a running pod uses is read through that pod's node (``hostPath``,
    in ``helper_namespace``); a claim nobody uses is mounted read-only by a pod
    in ``namespace`` on its volume's node."""
    users: dict[str, Any] = {}
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None or not pod.spec.node_name:
            continue
        if pod.status is None or pod.status.phase != "Running":
            continue
        for spec_volume in pod.spec.volumes or []:
            if spec_volume.persistent_volume_claim is not None:
                users.setdefault(spec_volume.persistent_volume_claim.claim_name, pod)
    groups: dict[tuple[str, str], list[Mount]] = {}
    notes: list[str] = []
    for claim in claims:
        name = claim.metadata.name
        volume = volumes.get(claim.spec.volume_name or "")
        if volume is None:
            notes.append(f"claim {name}: not bound to a volume")
            continue
        user = users.get(name)
        if user is None:
            # nobody has it mounted: the debug pod mounts the claim itself, read-only, on
            # the volume's node (a drained server's volume while its replacement is Pending)
            node = _affinity_node(volume, nodes)
            if not node:
                notes.append(
                    f"claim {name}: no running pod uses it and its volume names no one node"
                )
                continue
            groups.setdefault((namespace, node), []).append(Mount(volume.metadata.name, name))
            continue
        # in use: read what the server's own mount shows, through the node, instead of
        # mounting the claim a second time (RWOP forbids it; drivers such as ZFS-LocalPV
        # refuse a second mount of a volume unless its class is shared)
        host = _node_path(volume, user, kubelet_root)
        if not host:
            notes.append(
                f"claim {name}: in use by {user.metadata.name}, and its volume has no path on "
                "the node to read (neither local, hostPath nor CSI)"
            )
            continue
        mount = Mount(volume.metadata.name, name, host_path=host)
        groups.setdefault((helper_namespace, user.spec.node_name), []).append(mount)
    return [DebugPod(ns, node, tuple(m)) for (ns, node), m in sorted(groups.items())], notes


def manifest(debug: DebugPod, name: str, image: str, deadline_s: int) -> dict[str, Any]:
    """The read-only debug pod for ``debug``."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, mount in enumerate(debug.mounts):
        volume: dict[str, Any] = {"name": f"disk-{index}"}
        if mount.host_path:
            volume["hostPath"] = {"path": mount.host_path, "type": "Directory"}
        else:
            volume["persistentVolumeClaim"] = {"claimName": mount.claim, "readOnly": True}
        volumes.append(volume)
        mounts.append(
            {
                "name": f"disk-{index}",
                "mountPath": f"{MOUNT_ROOT}/{mount.volume}",
                "readOnly": True,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": debug.namespace,
            "labels": {LABEL: LABEL_VALUE, "app.kubernetes.io/managed-by": "flywheel-chaos"},
        },
        "spec": {
            "nodeName": debug.node,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "command": [
                        "sh",
                        "-c",
                        SCRIPT,
                        "sh",
                        MOUNT_ROOT,
                        *(m.volume for m in debug.mounts),
                    ],
                    "env": [
                        {"name": settings.FLYWHEEL_DISK_ENTRIES.name, "value": str(ENTRIES)},
                        {"name": settings.FLYWHEEL_HASH_LIMIT.name, "value": str(HASH_LIMIT)},
                    ],
                    "volumeMounts": mounts,
                    "securityContext": {
                        "runAsUser": 0,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]},
                    },
                    "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}},
                }
            ],
            "volumes": volumes,
        },
    }


# --------------------------------------------------------------------- run ---


def pod_name(node: str) -> str:
    return f"flywheel-chaos-disk-view-{node}"[:52] + "-" + uuid.uuid4().hex[:8]


def run(
    core: client.CoreV1Api,
    debug: DebugPod,
    image: str,
    deadline_s: float,
    read_log: Callable[[Any], str],
) -> tuple[Listing, str]:
    """Start the debug pod, wait (bounded) for it to finish, read its listing, delete it.

    Returns the listing and a note ("" when it completed). ``read_log`` reads
    the finished pod's log (the API on a real cluster; the lab has no kubelet
    API, so there the node's log file).
    """
    name = pod_name(debug.node)
    body = manifest(debug, name, image, max(5, int(deadline_s)))
    where = f"{debug.namespace}/{name} on {debug.node}"
    try:
        core.create_namespaced_pod(debug.namespace, body, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        hint = (
            "add the deploy/components/disk-view component to your overlay"
            if exc.status in (403, 404)
            else "see the API server's answer"
        )
        return Listing(), f"the debug pod {where} was refused: {exc.status} {exc.reason} ({hint})"
    try:
        started = time.monotonic()
        phase = "Pending"
        pod: Any = None
        while time.monotonic() - started < deadline_s:
            pod = core.read_namespaced_pod(name, debug.namespace, _request_timeout=API_TIMEOUT)
            phase = pod.status.phase if pod.status else "Pending"
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        if phase not in ("Succeeded", "Failed"):
            waiting = (
                [
                    f"{s.state.waiting.reason}: {s.state.waiting.message or ''}".strip()
                    for s in (pod.status.container_statuses or [])
                    if s.state and s.state.waiting
                ]
                if pod is not None and pod.status
                else []
            )
            return Listing(), (
                f"the debug pod {where} did not finish within {deadline_s:g} s "
                f"(phase {phase}{'; ' + '; '.join(waiting) if waiting else ''})"
            )
        listing = parse(read_log(pod))
        note = ""
        if phase == "Failed" or not listing.complete:
            note = f"the debug pod {where} ended {phase} with an incomplete listing"
        return listing, note
    finally:
        delete(core, debug.namespace, name)


def delete(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    """Delete a debug pod at once (it holds nothing to finish); False when it was gone."""
    try:
        core.delete_namespaced_pod(
            name,
            namespace,
            body=client.V1DeleteOptions(grace_period_seconds=0),
            _request_timeout=API_TIMEOUT,
        )
        return True
    except ApiException as exc:
        if exc.status != 404:
            raise
        return False


def api_log(core: client.CoreV1Api) -> Callable[[Any], str]:
    """Read a finished debug pod's listing through the API (a real cluster's kubelet)."""

    def read(pod: Any) -> str:
        return str(
            core.read_namespaced_pod_log(
                pod.metadata.name,
                pod.metadata.namespace,
                container=CONTAINER,
                limit_bytes=LOG_LIMIT_BYTES,
                _request_timeout=API_TIMEOUT,
            )
        )

    return read
