"""How a node is lost, one method each, and how it comes back (helpers of :mod:`actions.nodes`).

* ``kubelet-stop`` (the default on a real cluster): a privileged helper pod
  pinned to the node (``hostPID``, ``nsenter -t 1 -m -u -i -n -p``) runs, as
  one host command, "schedule the kubelet's start in ``duration_s`` as a
  transient systemd timer, then stop the kubelet". Nothing can reach a node
  whose kubelet is down, not even ``kubectl exec``, so the host's own timer is
  the dead-man switch: the kubelet comes back even if the harness dies.
* ``command``: the operator's own stop and start commands (IPMI, ``ssh bumble
  sudo systemctl stop k3s``, a hypervisor CLI), run without a shell, with a
  timeout; ``{node}`` in them is replaced by the node's name.
* ``lab-freeze`` / ``lab-crash`` (the lab only): a hung node (its agent and
  pods stopped with SIGSTOP) or a power loss (killed with SIGKILL; powering on
  restarts the agent, whose pods restart as a kubelet's do after boot). The
  action asks the lab node's power supervisor, the lab's hypervisor, through
  the request file below; it never runs lab code itself.
* ``taint`` is not a fault: on a Ready node the node lifecycle controller
  removes a hand-made ``unreachable`` taint within one monitor period, and
  pods tolerate it for 300 s anyway. It is refused.

Each method is confirmed by the API: the node's Ready condition leaves
``True`` within a deadline (for ``lab-crash``, also the supervisor's word that
the processes are gone).

**The lab power contract** (also read by ``harness.lab.power``): the action
writes ``<lab_dir>/nodes/<node>/power.request`` (JSON ``{"id", "want", "at"}``,
``want`` one of ``freeze``, ``thaw``, ``off``, ``on``); the supervisor enacts
it and writes ``power.state`` (JSON ``{"id", "state", "agent_pid", "pods",
"changed_at"}``) naming the request it handled.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from actions.cluster import API_TIMEOUT, SafetyRefusal

__all__: list[str] = []  # helpers, not activities

logger = logging.getLogger("flywheel_chaos.actions")

METHODS = ("kubelet-stop", "command", "lab-freeze", "lab-crash")
LAB_METHODS = ("lab-freeze", "lab-crash")
POWER_REQUEST = "power.request"
POWER_STATE = "power.state"
POWER_WANTS = ("freeze", "thaw", "off", "on")
HELPER_LABEL = "flywheel-chaos.io/fault"
HELPER_DURATION = "flywheel-chaos.io/duration-s"
OUTPUT_LIMIT = 4000
"""Characters of a command's output kept in the action's result."""


# --------------------------------------------------------------- the node ---


def ready_status(core: client.CoreV1Api, node: str) -> str:
    """The node's Ready condition: ``True``, ``False`` or ``Unknown``."""
    obj = core.read_node(node, _request_timeout=API_TIMEOUT)
    for condition in (obj.status.conditions or []) if obj.status else []:
        if condition.type == "Ready":
            return str(condition.status)
    return "Unknown"


def wait_ready(
    core: client.CoreV1Api, node: str, want_ready: bool, within_s: float, what: str
) -> tuple[bool, float, str]:
    """Poll (every 0.5 s, each read bounded) until Ready is/leaves ``True``; (reached, seconds, last)."""
    started = time.monotonic()
    last = "?"
    attempt = 0
    while True:
        attempt += 1
        try:
            last = ready_status(core, node)
        except ApiException as exc:  # a read that failed: say so, keep waiting
            last = f"unreadable ({exc.status})"
            logger.info("%s: attempt %d: reading node %s failed: %s", what, attempt, node, exc)
        reached = (last == "True") == want_ready and not last.startswith("unreadable")
        elapsed = time.monotonic() - started
        if reached or elapsed >= within_s:
            return reached, round(elapsed, 2), last
        time.sleep(0.5)


def displaced_pods(core: client.CoreV1Api, node: str, helper_namespace: str) -> list[Any]:
    """Pods a lost node displaces: all on it but DaemonSet, mirror and finished ones, and our helper."""
    pods = core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}", _request_timeout=API_TIMEOUT
    ).items
    kept = []
    for pod in pods:
        owners = [o.kind for o in pod.metadata.owner_references or [] if o.controller]
        if "DaemonSet" in owners:
            continue
        if "kubernetes.io/config.mirror" in (pod.metadata.annotations or {}):
            continue
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            continue
        if (pod.metadata.labels or {}).get(
            HELPER_LABEL
        ) and pod.metadata.namespace == helper_namespace:
            continue
        kept.append(pod)
    return kept


# ------------------------------------------------------------ kubelet-stop ---


def helper_name(node: str) -> str:
    return f"flywheel-chaos-kubelet-stop-{node}"


def kubelet_stop_script(unit: str, duration_s: float) -> str:
    """The host command: schedule the kubelet's return first (the dead-man switch), then stop it."""
    seconds = max(1, round(duration_s))
    quoted = shlex.quote(unit)
    return (
        f"systemd-run --quiet --collect --unit=flywheel-chaos-kubelet-return "
        f"--on-active={seconds}s systemctl start {quoted} "
        f"|| {{ (sleep {seconds}; systemctl start {quoted}) & }}; "
        f"systemctl stop {quoted}"
    )


def helper_pod(
    node: str, namespace: str, image: str, unit: str, duration_s: float
) -> dict[str, Any]:
    """The privileged helper pod that stops ``unit`` on ``node`` for ``duration_s``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": helper_name(node),
            "namespace": namespace,
            "labels": {HELPER_LABEL: "kubelet-stop"},
            "annotations": {HELPER_DURATION: str(duration_s), "flywheel-chaos.io/unit": unit},
        },
        "spec": {
            "nodeName": node,
            "hostPID": True,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "kubelet-stop",
                    "image": image,
                    "command": [
                        "nsenter",
                        "-t",
                        "1",
                        "-m",
                        "-u",
                        "-i",
                        "-n",
                        "-p",
                        "--",
                        "sh",
                        "-c",
                        kubelet_stop_script(unit, duration_s),
                    ],
                    "securityContext": {"privileged": True},
                }
            ],
        },
    }


def start_helper(
    core: client.CoreV1Api, node: str, namespace: str, image: str, unit: str, duration_s: float
) -> str:
    body = helper_pod(node, namespace, image, unit, duration_s)
    try:
        core.create_namespaced_pod(namespace, body, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        raise ActivityFailed(
            f"cannot create the kubelet-stop helper pod {namespace}/{body['metadata']['name']}: "
            f"{exc.status} {exc.reason} (hint: apply deploy/opt-in/node-fault.yaml: the namespace must "
            "allow privileged pods and the identity create pods there)"
        ) from exc
    return str(body["metadata"]["name"])


def delete_helper(core: client.CoreV1Api, node: str, namespace: str) -> bool:
    try:
        core.delete_namespaced_pod(
            helper_name(node),
            namespace,
            body=client.V1DeleteOptions(grace_period_seconds=0),
            _request_timeout=API_TIMEOUT,
        )
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


# ----------------------------------------------------------------- command ---


def run_command(template: str, node: str, timeout_s: float, what: str) -> dict[str, Any]:
    """Run an operator command (no shell) with a timeout; its output is kept, bounded."""
    argv = [part.replace("{node}", node) for part in shlex.split(template)]
    if not argv:
        raise SafetyRefusal(f"refused: no {what} command is configured")
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise ActivityFailed(
            f"the {what} command timed out after {timeout_s:g}s: {argv[0]}"
        ) from exc
    except OSError as exc:
        raise ActivityFailed(f"the {what} command could not run: {exc}") from exc
    output = (result.stdout + result.stderr)[-OUTPUT_LIMIT:]
    outcome = {
        "command": argv[0],
        "exit": result.returncode,
        "seconds": round(time.monotonic() - started, 2),
        "output": output,
    }
    if result.returncode != 0:
        raise ActivityFailed(
            f"the {what} command exited {result.returncode}: {output.strip()[-500:]}"
        )
    return outcome


# --------------------------------------------------------------- lab power ---


def lab_node_dir(lab_dir: str, node: str) -> Path:
    return Path(lab_dir) / "nodes" / node


def power(lab_dir: str, node: str, want: str, within_s: float = 20.0) -> dict[str, Any]:
    """Ask the lab node's power supervisor for ``want`` and wait until it says it is done."""
    if want not in POWER_WANTS:
        raise ValueError(want)
    directory = lab_node_dir(lab_dir, node)
    if not directory.is_dir():
        raise SafetyRefusal(
            f"refused: {directory} does not exist: is {lab_dir} a running lab with node {node}?"
        )
    request = {"id": uuid.uuid4().hex, "want": want, "at": time.time()}
    tmp = directory / f".{POWER_REQUEST}.tmp"
    tmp.write_text(json.dumps(request))
    os.replace(tmp, directory / POWER_REQUEST)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state: dict[str, Any] = json.loads((directory / POWER_STATE).read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("id") == request["id"]:
            return state
        time.sleep(0.1)
    raise ActivityFailed(
        f"the lab's power supervisor of {node} did not answer '{want}' within {within_s:g}s "
        f"(hint: is the lab up? flywheel-chaos lab status)"
    )
