"""Registration and heartbeats: the Node object, its Lease and its Ready condition."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from harness.lab.nodeagent.kube import API_TIMEOUT, micro, ts
from harness.lab.paths import KUBERNETES_VERSION

logger = logging.getLogger("flywheel_chaos.nodeagent")

LEASE_RENEW_S = 2.0
STATUS_EVERY_S = 10.0


class NodeHeartbeat:
    """Registers node ``node`` and keeps it Ready the way a kubelet does."""

    def __init__(
        self,
        node: str,
        manifest: dict[str, Any],
        core: client.CoreV1Api,
        coordination: client.CoordinationV1Api,
        host_ip: str,
    ) -> None:
        self.node = node
        self.manifest = manifest
        self.core = core
        self.coordination = coordination
        self.host_ip = host_ip
        self.paused_until = 0.0

    def register(self) -> None:
        labels = dict(self.manifest.get("metadata", {}).get("labels") or {})
        labels.update(
            {
                "kubernetes.io/hostname": self.node,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }
        )
        annotations = dict(self.manifest.get("metadata", {}).get("annotations") or {})
        try:
            self.core.read_node(self.node, _request_timeout=API_TIMEOUT)
            self.core.patch_node(
                self.node,
                {"metadata": {"labels": labels, "annotations": annotations}},
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.node, "labels": labels, "annotations": annotations},
                "spec": dict(self.manifest.get("spec") or {}),
            }
            self.core.create_node(body, _request_timeout=API_TIMEOUT)
        self.report_status()
        self.renew_lease()

    def report_status(self) -> None:
        stamp = ts()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "flywheel lab node agent is posting ready status",
            "lastHeartbeatTime": stamp,
        }
        conditions = [ready]
        for kind, reason in (
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ):
            conditions.append(
                {
                    "type": kind,
                    "status": "False",
                    "reason": reason,
                    "message": "",
                    "lastHeartbeatTime": stamp,
                }
            )
        current = self.core.read_node_status(self.node, _request_timeout=API_TIMEOUT)
        for condition in conditions:
            previous = next(
                (c for c in (current.status.conditions or []) if c.type == condition["type"]), None
            )
            if (
                previous is not None
                and previous.status == condition["status"]
                and previous.last_transition_time
            ):
                condition["lastTransitionTime"] = ts(previous.last_transition_time)
            else:
                condition["lastTransitionTime"] = stamp
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
        status = {
            "conditions": conditions,
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node)),
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.node}-{os.getpid()}")),
                "kernelVersion": platform.release(),
                "osImage": "flywheel-chaos lab node",
                "containerRuntimeVersion": "flywheel-lab://0.1",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": KUBERNETES_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.core.patch_node_status(self.node, {"status": status}, _request_timeout=API_TIMEOUT)

    def renew_lease(self) -> None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": 40,
                "renewTime": micro(),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node, "kube-node-lease", {"spec": body["spec"]}, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = self.core.read_node(self.node, _request_timeout=API_TIMEOUT)
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node.metadata.uid}
            ]
            self.coordination.create_namespaced_lease(
                "kube-node-lease", body, _request_timeout=API_TIMEOUT
            )

    def pause(self, seconds: float) -> None:
        """Post nothing for ``seconds``: what the API sees of a kubelet that stopped."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    @property
    def paused(self) -> bool:
        return time.monotonic() < self.paused_until

    def loop(self, stop: threading.Event) -> None:
        """Renew the Lease every LEASE_RENEW_S and the status every STATUS_EVERY_S until ``stop``."""
        last_status = time.monotonic()
        while not stop.wait(LEASE_RENEW_S):
            if self.paused:
                last_status = 0.0  # report at once when the pause ends
                continue
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY_S:
                    self.report_status()
                    last_status = time.monotonic()
            except Exception as exc:  # keep beating
                logger.warning("heartbeat failed: %s", exc)
