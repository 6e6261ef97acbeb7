"""The cluster part of an RCA bundle: pods and their logs, events, endpoints, claims, nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from flywheel_chaos.kube.client import API_TIMEOUT, api_client
from flywheel_chaos.kube.nodes import ready_condition
from harness.record.posture import Target
from harness.record.rca_bundle import LOG_TAIL_BYTES, LOG_TAIL_LINES, Bundle, split_restarts, tail
from harness.record.redact import Redactor


class ClusterStep:
    """Reads the authority's namespace into ``bundle``; ``facts`` for the summary and
    ``objects`` (``pods``, ``claims``, ``volumes``, ``nodes``) for the disk view."""

    def __init__(self, bundle: Bundle, target: Target, redactor: Redactor, lab_dir: str) -> None:
        self.bundle, self.redactor, self.lab_dir = bundle, redactor, lab_dir
        self.namespace = target.namespace
        self.api = api_client()
        self.core = client.CoreV1Api(self.api)
        self.sanitize = self.api.sanitize_for_serialization
        self.facts: dict[str, Any] = {}
        self.objects: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        self.bundle.step("pods", self.pods)
        if self.lab_dir:
            self.bundle.step("pod logs (lab)", self.lab_logs)
        self.bundle.step("events", self.events)
        self.bundle.step("endpoints, claims, volumes, nodes", self.network_and_storage)
        return self.facts

    def pods(self) -> None:
        items = self.core.list_namespaced_pod(self.namespace, _request_timeout=API_TIMEOUT).items
        self.objects["pods"] = items
        self.facts["pods"] = [self._pod_fact(p) for p in items]
        self.bundle.add_json("k8s/pods.json", [self.sanitize(p) for p in items], self.redactor)
        if not self.lab_dir:
            for pod in items:
                self._api_logs(pod)

    def _pod_fact(self, p: Any) -> dict[str, Any]:
        status = p.status
        return {
            "name": p.metadata.name,
            "uid": p.metadata.uid,
            "node": p.spec.node_name,
            "phase": status.phase if status else None,
            "conditions": self.sanitize(status.conditions) if status else None,
            "restarts": {s.name: s.restart_count for s in (status.container_statuses or [])}
            if status
            else {},
            "deleting": p.metadata.deletion_timestamp is not None,
        }

    def _api_logs(self, pod: Any) -> None:
        for container in pod.spec.containers:
            for previous in (False, True):
                try:
                    text = self.core.read_namespaced_pod_log(
                        pod.metadata.name,
                        self.namespace,
                        container=container.name,
                        previous=previous,
                        tail_lines=LOG_TAIL_LINES,
                        limit_bytes=LOG_TAIL_BYTES,
                        _request_timeout=API_TIMEOUT,
                    )
                except client.ApiException:
                    continue
                suffix = ".previous.log" if previous else ".log"
                name = f"k8s/logs/{pod.metadata.name}/{container.name}{suffix}"
                self.bundle.files[name] = self.redactor.text(str(text)).encode()

    def lab_logs(self) -> None:
        """Every pod of the namespace the lab's nodes ran, gone ones included."""
        for pod_file in sorted(Path(self.lab_dir).glob("nodes/*/pods/*/pod")):
            ident = pod_file.read_text().split()[0]
            if not ident.startswith(f"{self.namespace}/"):
                continue
            name = ident.split("/", 1)[1]
            for log in sorted(pod_file.parent.glob("*.log")):
                current, previous = split_restarts(log.read_text(errors="replace"))
                base = f"k8s/logs/{name}/{log.stem}"
                self.bundle.files[f"{base}.log"] = self.redactor.text(tail(current)).encode()
                if previous:
                    text = self.redactor.text(tail(previous)).encode()
                    self.bundle.files[f"{base}.previous.log"] = text

    def events(self) -> None:
        ns_events = self.core.list_namespaced_event(
            self.namespace, _request_timeout=API_TIMEOUT
        ).items
        node_events = [
            e
            for e in self.core.list_event_for_all_namespaces(_request_timeout=API_TIMEOUT).items
            if e.involved_object and e.involved_object.kind == "Node"
        ]
        self.facts["events"] = [
            {
                "object": f"{e.involved_object.kind}/{e.involved_object.name}",
                "reason": e.reason,
                "message": e.message,
                "count": e.count,
            }
            for e in [*ns_events, *node_events]
        ]
        self.bundle.add_json("k8s/events.json", self.facts["events"], self.redactor)

    def network_and_storage(self) -> None:
        core, namespace, add = self.core, self.namespace, self.bundle.add_json
        slices = client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
            namespace, _request_timeout=API_TIMEOUT
        )
        add("k8s/endpointslices.json", self.sanitize(slices.items), self.redactor)
        claims = core.list_namespaced_persistent_volume_claim(
            namespace, _request_timeout=API_TIMEOUT
        ).items
        add("k8s/claims.json", self.sanitize(claims), self.redactor)
        volumes = [
            core.read_persistent_volume(c.spec.volume_name, _request_timeout=API_TIMEOUT)
            for c in claims
            if c.spec.volume_name
        ]
        add("k8s/volumes.json", self.sanitize(volumes), self.redactor)
        self.objects["claims"] = claims
        self.objects["volumes"] = {v.metadata.name: v for v in volumes}
        self.facts["volumes"] = [
            {
                "name": v.metadata.name,
                "claim": v.spec.claim_ref.name if v.spec.claim_ref else None,
                "affinity": self.sanitize(v.spec.node_affinity),
            }
            for v in volumes
        ]
        nodes = core.list_node(_request_timeout=API_TIMEOUT).items
        self.objects["nodes"] = {n.metadata.name for n in nodes}
        self.facts["nodes"] = [
            {
                "name": n.metadata.name,
                "unschedulable": bool(n.spec.unschedulable),
                "taints": [f"{t.key}:{t.effect}" for t in n.spec.taints or []],
                "ready": ready_condition(n),
            }
            for n in nodes
        ]
        add("k8s/nodes.json", self.facts["nodes"], self.redactor)
