"""What a container's environment holds: service links, the downward API, Secret and ConfigMap keys."""

from __future__ import annotations

import base64
import re
from typing import Any

from kubernetes import client

from harness.lab.nodeagent.kube import API_TIMEOUT
from harness.lab.nodeagent.runtime import PodRunner
from harness.lab.paths import service_address

VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def service_links(services: list[Any]) -> dict[str, str]:
    """The kubelet's service environment variables (``enableServiceLinks``).

    ``{NAME}_SERVICE_HOST`` is the address clients reach the Service at: in
    the lab, the service proxy's stable loopback twin of the ClusterIP.
    """
    values: dict[str, str] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or not svc.spec.ports:
            continue
        prefix = svc.metadata.name.upper().replace("-", "_")
        values[f"{prefix}_SERVICE_HOST"] = service_address(ip)
        values[f"{prefix}_SERVICE_PORT"] = str(svc.spec.ports[0].port)
        for port in svc.spec.ports:
            if port.name:
                values[f"{prefix}_SERVICE_PORT_{port.name.upper().replace('-', '_')}"] = str(
                    port.port
                )
    return values


def container_env(
    core: client.CoreV1Api,
    pod: Any,
    runner: PodRunner,
    spec: Any,
    links: dict[str, str],
    node: str,
    host_ip: str,
) -> dict[str, str]:
    """The environment of container ``spec``: service links, then its own ``env`` resolved."""
    values: dict[str, str] = dict(links)
    for item in spec.env or []:
        if item.value_from is None:
            values[item.name] = VAR.sub(
                lambda m: values.get(m.group(1), m.group(0)), item.value or ""
            )
            continue
        source = item.value_from
        if source.field_ref is not None:
            path = source.field_ref.field_path
            values[item.name] = {
                # the downward API gives the address the process can bind
                "status.podIP": runner.bind_ip,
                "status.hostIP": host_ip,
                "metadata.name": runner.name,
                "metadata.namespace": runner.namespace,
                "metadata.uid": runner.uid,
                "spec.nodeName": node,
                "spec.serviceAccountName": pod.spec.service_account_name or "default",
            }.get(path, "")
        elif source.secret_key_ref is not None:
            ref = source.secret_key_ref
            secret = core.read_namespaced_secret(
                ref.name, runner.namespace, _request_timeout=API_TIMEOUT
            )
            values[item.name] = base64.b64decode((secret.data or {}).get(ref.key, "")).decode()
        elif source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            cm = core.read_namespaced_config_map(
                ref.name, runner.namespace, _request_timeout=API_TIMEOUT
            )
            values[item.name] = (cm.data or {}).get(ref.key, "")
    return values
