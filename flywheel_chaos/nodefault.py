"""How a node is lost, one method each, and how it comes back.

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
  fault asks the lab node's power supervisor, the lab's hypervisor, through
  the power contract (:mod:`flywheel_chaos.power`); it never runs lab code.
* ``taint`` is not a fault: on a Ready node the node lifecycle controller
  removes a hand-made ``unreachable`` taint within one monitor period, and
  pods tolerate it for 300 s anyway. It is refused.

Each method is confirmed by the API: the node's Ready condition leaves
``True`` within a deadline (for ``lab-crash``, also the supervisor's word that
the processes are gone).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TypedDict

from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.client.rest import ApiException

from flywheel_chaos import power, settings
from flywheel_chaos.kube.client import API_TIMEOUT
from flywheel_chaos.kube.nodes import wait_ready
from flywheel_chaos.kube.pods import not_displaced_because, pods_on_node
from flywheel_chaos.kube.safety import SafetyRefusal

__all__ = [
    "LAB_METHODS",
    "METHODS",
    "CommandOutcome",
    "FaultPlan",
    "Helper",
    "bring_back",
    "confirm",
    "delete_helper",
    "displaced_pods",
    "helper_pod",
    "inject",
    "kubelet_stop_script",
    "resolve",
    "run_command",
    "undo_record",
]

logger = logging.getLogger("flywheel_chaos.actions")

METHODS: Final = ("kubelet-stop", "command", "lab-freeze", "lab-crash")
LAB_METHODS: Final = ("lab-freeze", "lab-crash")
HELPER_LABEL: Final = "flywheel-chaos.io/fault"
HELPER_DURATION: Final = "flywheel-chaos.io/duration-s"
OUTPUT_LIMIT: Final = 4000
"""Characters of a command's output kept in the action's result."""


# --------------------------------------------------------------- the node ---


def displaced_pods(core: client.CoreV1Api, node: str, helper_namespace: str) -> list[Any]:
    """Pods a lost node displaces (the drain's predicate), but not our own helper pod."""
    return [
        pod
        for pod in pods_on_node(core, node)
        if not_displaced_because(pod) is None
        and not (
            (pod.metadata.labels or {}).get(HELPER_LABEL)
            and pod.metadata.namespace == helper_namespace
        )
    ]


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
            f"{exc.status} {exc.reason} (hint: add the deploy/components/node-fault component "
            "to your overlay: the namespace must allow privileged pods and the identity "
            "create pods there)"
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


class CommandOutcome(TypedDict):
    command: str
    exit: int
    seconds: float
    output: str


def run_command(template: str, node: str, timeout_s: float, what: str) -> CommandOutcome:
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
    outcome: CommandOutcome = {
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


# -------------------------------------------------------- plan and inject ---


class FaultPlan(TypedDict):
    """A node fault, resolved and checked before anything changes."""

    method: str
    lab: str
    """The lab a lab method reaches through the power contract (empty: none)."""
    stop: str
    start: str


def resolve(
    method: str,
    stop_command: str,
    start_command: str,
    configuration: Mapping[str, Any] | None,
) -> FaultPlan:
    """The method and its commands (arguments, else configuration, else the environment).

    Refuses a method that injects nothing (``taint``), an unknown one, a lab method without
    a lab, and ``command`` without both commands.
    """
    chosen = method or settings.from_config(
        configuration, "flywheel_node_fault_method", settings.FLYWHEEL_NODE_FAULT_METHOD
    )
    lab = power.lab_dir(configuration)
    if chosen == "taint":
        raise SafetyRefusal(
            "refused: method 'taint' injects nothing on a Ready node: the node lifecycle "
            "controller removes a hand-made unreachable taint within one monitor period and pods "
            "tolerate it for 300 s (hint: use kubelet-stop, command, or a lab method)"
        )
    if chosen not in METHODS:
        raise SafetyRefusal(
            f"refused: unknown node fault method {chosen!r} (hint: one of {', '.join(METHODS)})"
        )
    if chosen in LAB_METHODS and not lab:
        raise SafetyRefusal(
            f"refused: {chosen} freezes or kills lab processes and there is no lab here "
            "(FLYWHEEL_LAB_DIR is unset) (hint: on a real cluster use kubelet-stop or command)"
        )
    stop = stop_command or settings.from_config(
        configuration, "flywheel_node_stop_command", settings.FLYWHEEL_NODE_STOP_COMMAND
    )
    start = start_command or settings.from_config(
        configuration, "flywheel_node_start_command", settings.FLYWHEEL_NODE_START_COMMAND
    )
    if chosen == "command" and not (stop and start):
        raise SafetyRefusal(
            "refused: method 'command' needs both a stop and a start command (hint: set "
            "FLYWHEEL_NODE_STOP_COMMAND and FLYWHEEL_NODE_START_COMMAND; {node} is the node)"
        )
    return FaultPlan(
        method=chosen, lab=lab if chosen in LAB_METHODS else "", stop=stop, start=start
    )


class Helper(NamedTuple):
    """The kubelet-stop helper pod: where it runs, its image, the kubelet unit it stops."""

    namespace: str
    image: str
    unit: str


def undo_record(
    plan: FaultPlan, helper: Helper, command_timeout_s: float, ready_within_s: float
) -> dict[str, Any]:
    """What the rollback (and ``recover``) needs to bring the node back."""
    method = plan["method"]
    return {
        "method": method,
        "lab_dir": plan["lab"],
        "start_command": plan["start"] if method == "command" else "",
        "command_timeout_s": command_timeout_s,
        "kubelet_unit": helper.unit,
        "helper_namespace": helper.namespace if method == "kubelet-stop" else "",
        "ready_within_s": ready_within_s,
    }


def inject(
    core: client.CoreV1Api,
    plan: FaultPlan,
    node: str,
    helper: Helper,
    duration_s: float,
    command_timeout_s: float,
) -> dict[str, Any]:
    """Inject the planned fault.

    Raises ``ActivityFailed`` when a kubelet-stop helper pod cannot be created (nothing was
    injected) or a command fails.
    """
    method = plan["method"]
    if method == "kubelet-stop":
        pod = start_helper(core, node, helper.namespace, helper.image, helper.unit, duration_s)
        return {"helper_pod": pod}
    if method == "command":
        return {"stop": run_command(plan["stop"], node, command_timeout_s, "stop")}
    state = power.request(plan["lab"], node, "freeze" if method == "lab-freeze" else "off")
    return {"power": state.get("state"), "killed_pids": state.get("killed", [])}


def confirm(
    core: client.CoreV1Api, node: str, method: str, injected: dict[str, Any], within_s: float
) -> tuple[bool, str]:
    """Whether the fault took effect: Ready left True within ``within_s`` (a crash: killed)."""
    confirmed, seconds, last = wait_ready(core, node, False, within_s, f"{node} lost")
    confirmation = f"{node} Ready={last} after {seconds:.1f} s"
    if method == "lab-crash" and injected.get("power") == "off":
        killed = len(injected.get("killed_pids") or [])
        return True, f"{node}'s agent and pods killed ({killed} process group(s)); {confirmation}"
    if not confirmed:
        logger.warning(
            "%s did not take effect on %s: Ready is still %s after %.0f s",
            method,
            node,
            last,
            seconds,
        )
        return False, f"not confirmed: {node} still Ready={last} after {seconds:.1f} s"
    return True, confirmation


# ------------------------------------------------------------- bring back ---


def bring_back(core: client.CoreV1Api, node: str, undo: dict[str, Any]) -> dict[str, Any]:
    """Undo a node fault from its intent's ``undo`` record and wait until the node is Ready.

    When it is not Ready in time this raises ``ActivityFailed`` naming what an operator runs
    by hand (the intent stays for ``recover``).
    """
    method = str(undo.get("method") or ("lab-freeze" if undo.get("thaw_lab_node") else "taint"))
    lab = str(undo.get("lab_dir") or "")
    result: dict[str, Any] = {"node": node, "method": method}
    by_hand = f"start the node's kubelet (on {node}: sudo systemctl start {undo.get('kubelet_unit') or 'kubelet'})"
    if method == "command":
        result["start"] = run_command(
            str(undo.get("start_command") or ""),
            node,
            float(undo.get("command_timeout_s") or 60),
            "start",
        )
        by_hand = f"run the start command by hand: {undo.get('start_command')}"
    elif method in LAB_METHODS or undo.get("thaw_lab_node"):
        want: power.PowerWant = "on" if method == "lab-crash" else "thaw"
        result["power"] = power.request(lab, node, want).get("state")
        result["thawed" if want == "thaw" else "restarted"] = True
        by_hand = f"flywheel-chaos lab --lab-dir {lab} node start {node}"
    # kubelet-stop: the host's own timer starts the kubelet; wait for it
    if undo.get("remove_taint"):  # intents written by earlier versions
        result["taint_removed"] = remove_unreachable_taint(core, node)
    if method != "taint":
        within = float(undo.get("ready_within_s") or 180)
        ready, seconds, last = wait_ready(core, node, True, within, f"{node} back")
        if not ready:
            raise ActivityFailed(
                f"node {node} is not Ready {seconds:.0f} s after the {method} fault (Ready={last}); "
                f"{by_hand}, then run flywheel-chaos recover (the intent stays until then)"
            )
        result["kubelet_ready"] = True
        result["ready_after_s"] = seconds
    if method == "kubelet-stop" and undo.get("helper_namespace"):
        result["helper_deleted"] = delete_helper(core, node, str(undo["helper_namespace"]))
    return result


UNREACHABLE_TAINT: Final = "node.kubernetes.io/unreachable"


def remove_unreachable_taint(core: client.CoreV1Api, name: str) -> bool:
    """Remove a hand-made unreachable taint (what intents of earlier versions undo)."""
    node = core.read_node(name, _request_timeout=API_TIMEOUT)
    taints = [t.to_dict() for t in node.spec.taints or []]
    kept = [t for t in taints if not (t["key"] == UNREACHABLE_TAINT and t["effect"] == "NoExecute")]
    if len(kept) == len(taints):
        return False
    core.patch_node(
        name,
        {"spec": {"taints": [_taint_body(t) for t in kept] or None}},
        _request_timeout=API_TIMEOUT,
    )
    return True


def _taint_body(taint: dict[str, Any]) -> dict[str, Any]:
    body = {"key": taint["key"], "effect": taint["effect"]}
    if taint.get("value"):
        body["value"] = taint["value"]
    added = taint.get("time_added") or taint.get("timeAdded")
    if added:
        body["timeAdded"] = added.isoformat() if hasattr(added, "isoformat") else str(added)
    return body
