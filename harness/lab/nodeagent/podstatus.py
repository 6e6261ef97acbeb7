"""The pod status a kubelet publishes: phase, conditions, container statuses."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from harness.lab.nodeagent.kube import API_TIMEOUT, ts
from harness.lab.nodeagent.runtime import Container, PodRunner


def container_status(container: Container) -> dict[str, Any]:
    state: dict[str, Any]
    if container.running():
        state = {"running": {"startedAt": ts(container.started_at)}}
    elif container.waiting_reason == "Terminated" and container.last_exit:
        state = {"terminated": container.last_exit}
    else:
        state = {"waiting": {"reason": container.waiting_reason or "ContainerCreating"}}
    status: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "imageID": container.image,
        "containerID": f"flywheel://{container.pid}",
        "ready": container.ready,
        "started": container.running(),
        "restartCount": container.restart_count,
        "state": state,
        "lastState": {"terminated": container.last_exit} if container.last_exit else {},
    }
    return status


def _phase(runner: PodRunner) -> str:
    containers = runner.containers
    if containers and all(c.waiting_reason == "Terminated" for c in containers):
        succeeded = all((c.last_exit or {}).get("exitCode") == 0 for c in containers)
        return "Succeeded" if succeeded else "Failed"
    started = any(c.running() for c in containers) or any(c.restart_count for c in containers)
    return "Running" if started else "Pending"


def _state_name(cs: Any) -> str:
    if cs.state and cs.state.running:
        return "running"
    if cs.state and cs.state.terminated:
        return "terminated"
    return "waiting"


def _observed(pod: Any, kinds: list[str]) -> dict[str, Any]:
    """What the API holds now: the node lifecycle controller marks pods of a NotReady node
    not ready, so the agent compares with the object, not with its last write."""
    old = {c.type: c for c in pod.status.conditions or []}
    return {
        "phase": pod.status.phase,
        "conditions": {kind: old[kind].status if kind in old else None for kind in kinds},
        "statuses": [
            (cs.name, cs.ready, cs.restart_count, _state_name(cs), cs.container_id)
            for cs in pod.status.container_statuses or []
        ],
        "ip": pod.status.pod_ip,
    }


def _conditions(pod: Any, desired: dict[str, str]) -> list[dict[str, Any]]:
    """The pod's conditions: PodScheduled kept, the others with their transition times."""
    old = {c.type: c for c in pod.status.conditions or []}
    conditions = []
    scheduled = old.get("PodScheduled")
    if scheduled is not None:
        moment = ts(scheduled.last_transition_time) if scheduled.last_transition_time else ts()
        conditions.append(
            {"type": "PodScheduled", "status": scheduled.status, "lastTransitionTime": moment}
        )
    for kind, value in desired.items():
        previous = old.get(kind)
        kept = previous is not None and previous.status == value and previous.last_transition_time
        moment = ts(previous.last_transition_time) if previous is not None and kept else ts()
        conditions.append({"type": kind, "status": value, "lastTransitionTime": moment})
    return conditions


def publish(core: client.CoreV1Api, runner: PodRunner, pod: Any, host_ip: str) -> None:
    """Patch the pod's status when it differs from what the API holds."""
    statuses = [container_status(c) for c in runner.containers]
    if not runner.containers and runner.waiting_reason:
        # not made yet (a Secret or ConfigMap it names is missing): say why, as a kubelet does
        statuses = [
            {
                "name": spec.name,
                "image": spec.image,
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": runner.waiting_reason}},
            }
            for spec in pod.spec.containers
        ]
    all_ready = bool(runner.containers) and all(c.ready for c in runner.containers)
    phase = _phase(runner)
    desired = {
        "Initialized": "True" if runner.prepared else "False",
        "ContainersReady": "True" if all_ready else "False",
        "Ready": "True" if all_ready else "False",
    }
    key = {
        "phase": phase,
        "conditions": desired,
        "statuses": [
            (s["name"], s["ready"], s["restartCount"], next(iter(s["state"])), s.get("containerID"))
            for s in statuses
        ],
        "ip": runner.pod_ip,
    }
    if runner.last_status == key and _observed(pod, list(desired)) == key:
        return
    body = {
        "status": {
            "phase": phase,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": runner.pod_ip,
            "podIPs": [{"ip": runner.pod_ip}],
            "startTime": ts(runner.started_at),
            "conditions": _conditions(pod, desired),
            "containerStatuses": statuses,
        }
    }
    try:
        core.patch_namespaced_pod_status(
            runner.name, runner.namespace, body, _request_timeout=API_TIMEOUT
        )
        runner.last_status = key
    except ApiException as exc:
        if exc.status != 404:
            raise
