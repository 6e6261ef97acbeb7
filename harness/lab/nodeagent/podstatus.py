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
        "containerID": f"flywheel://{container.process.pid if container.process else 0}",
        "ready": container.ready,
        "started": container.running(),
        "restartCount": container.restart_count,
        "state": state,
        "lastState": {"terminated": container.last_exit} if container.last_exit else {},
    }
    return status


def publish(core: client.CoreV1Api, runner: PodRunner, pod: Any, host_ip: str) -> None:
    """Patch the pod's status when it differs from what the API holds."""
    statuses = [container_status(c) for c in runner.containers]
    all_ready = bool(runner.containers) and all(c.ready for c in runner.containers)
    any_running = any(c.running() for c in runner.containers)
    if runner.containers and all(c.waiting_reason == "Terminated" for c in runner.containers):
        phase = (
            "Succeeded"
            if all((c.last_exit or {}).get("exitCode") == 0 for c in runner.containers)
            else "Failed"
        )
    else:
        phase = (
            "Running"
            if any_running or any(c.restart_count for c in runner.containers)
            else "Pending"
        )
    conditions = []
    for previous in pod.status.conditions or []:
        if previous.type == "PodScheduled":
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": previous.status,
                    "lastTransitionTime": ts(previous.last_transition_time)
                    if previous.last_transition_time
                    else ts(),
                }
            )
    desired = {
        "Initialized": "True" if runner.prepared else "False",
        "ContainersReady": "True" if all_ready else "False",
        "Ready": "True" if all_ready else "False",
    }
    key = {
        "phase": phase,
        "conditions": desired,
        "statuses": [
            (s["name"], s["ready"], s["restartCount"], next(iter(s["state"])), s["containerID"])
            for s in statuses
        ],
        "ip": runner.pod_ip,
    }
    old = {c.type: c for c in pod.status.conditions or []}
    # what the API holds now: the node lifecycle controller marks pods of a
    # NotReady node not ready, so compare with the object, not our last write
    observed = {
        "phase": pod.status.phase,
        "conditions": {kind: old[kind].status if kind in old else None for kind in desired},
        "statuses": [
            (
                cs.name,
                cs.ready,
                cs.restart_count,
                "running"
                if cs.state and cs.state.running
                else "terminated"
                if cs.state and cs.state.terminated
                else "waiting",
                cs.container_id,
            )
            for cs in pod.status.container_statuses or []
        ],
        "ip": pod.status.pod_ip,
    }
    if runner.last_status == key and observed == key:
        return
    for kind, value in desired.items():
        previous = old.get(kind)
        moment = (
            ts(previous.last_transition_time)
            if previous and previous.status == value and previous.last_transition_time
            else ts()
        )
        conditions.append({"type": kind, "status": value, "lastTransitionTime": moment})
    body = {
        "status": {
            "phase": phase,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": runner.pod_ip,
            "podIPs": [{"ip": runner.pod_ip}],
            "startTime": ts(runner.started_at),
            "conditions": conditions,
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
