"""What a container's environment holds: service links, the downward API, Secret and ConfigMap keys."""

from __future__ import annotations

import base64
import re
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from harness.lab.nodeagent.kube import API_TIMEOUT
from harness.lab.nodeagent.runtime import PodRunner
from harness.lab.paths import service_address

VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
SERVICE_NAME = re.compile(
    r"(?<![A-Za-z0-9.-])([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"\.svc(\.cluster\.local)?(?![A-Za-z0-9-])"
)


def api_server_links(services: list[Any]) -> dict[str, str]:
    """``KUBERNETES_SERVICE_HOST``/``PORT``, which a kubelet gives every pod: the
    ``default/kubernetes`` Service (in the lab, the service proxy forwards it to the API
    server), what in-cluster configuration connects to."""
    for svc in services:
        if (svc.metadata.namespace, svc.metadata.name) == ("default", "kubernetes"):
            port = next((p.port for p in svc.spec.ports or [] if p.name == "https"), 443)
            return {
                "KUBERNETES_SERVICE_HOST": service_address(svc.spec.cluster_ip),
                "KUBERNETES_SERVICE_PORT": str(port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            }
    return {}


def service_names(services: list[Any]) -> dict[str, str]:
    """``name.namespace`` -> the address a client reaches the Service at (the lab has no
    cluster DNS: the node agent puts the address where a container's arguments and
    environment name ``NAME.NAMESPACE.svc[.cluster.local]``)."""
    return {
        f"{svc.metadata.name}.{svc.metadata.namespace}": service_address(svc.spec.cluster_ip)
        for svc in services
        if svc.spec.cluster_ip and svc.spec.cluster_ip != "None"
    }


def resolve_service_names(text: str, names: dict[str, str]) -> str:
    """``text`` with each known ``NAME.NAMESPACE.svc`` host replaced by its address."""
    return SERVICE_NAME.sub(lambda m: names.get(f"{m.group(1)}.{m.group(3)}", m.group(0)), text)


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


class MissingReference(Exception):
    """A container's env names a Secret, ConfigMap or key that does not exist (and is not
    optional): the kubelet's CreateContainerConfigError; the pod waits and is retried."""


def _read(reader: Any, name: str, namespace: str, kind: str, optional: bool | None) -> Any:
    try:
        return reader(name, namespace, _request_timeout=API_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise
        if optional:
            return None
        raise MissingReference(f"{kind} {namespace}/{name} not found") from exc


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
            secret = _read(
                core.read_namespaced_secret, ref.name, runner.namespace, "secret", ref.optional
            )
            data = (secret.data if secret is not None else None) or {}
            if ref.key not in data:
                if secret is not None and not ref.optional:
                    raise MissingReference(f"key {ref.key} of secret {ref.name} not found")
                continue
            values[item.name] = base64.b64decode(data[ref.key]).decode()
        elif source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            cm = _read(
                core.read_namespaced_config_map,
                ref.name,
                runner.namespace,
                "configmap",
                ref.optional,
            )
            found = (cm.data if cm is not None else None) or {}
            if ref.key not in found:
                if cm is not None and not ref.optional:
                    raise MissingReference(f"key {ref.key} of configmap {ref.name} not found")
                continue
            values[item.name] = found[ref.key]
    return values
