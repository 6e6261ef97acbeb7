"""Projected volumes as a kubelet fills them: a service account token, the cluster CA, the
namespace.

The ServiceAccount admission plugin gives every pod (unless it opts out with
``automountServiceAccountToken: false``) a projected ``kube-api-access-*`` volume mounted at
``/var/run/secrets/kubernetes.io/serviceaccount``: a token from the real TokenRequest API,
bound to the pod (its name and uid) with the audience and lifetime the projection asks for;
the ``kube-root-ca.crt`` ConfigMap's ``ca.crt``; the pod's namespace from the downward API.
The token is renewed as a kubelet renews it: once 80 % of its lifetime has passed, or after
24 hours, whichever comes first (:func:`refresh_due`), written beside and renamed into place
so a reader never sees half a token.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from harness.lab.nodeagent.kube import API_TIMEOUT, now
from harness.processes import write_private

logger = logging.getLogger("flywheel_chaos.nodeagent")

__all__ = ["ProjectedToken", "fill", "refresh_due", "renew"]

MAX_AGE = dt.timedelta(hours=24)


@dataclass
class ProjectedToken:
    """One ``serviceAccountToken`` source of a pod's projected volume."""

    path: Path
    namespace: str
    service_account: str
    pod: str
    pod_uid: str
    audience: str
    expiration_s: int
    issued: dt.datetime | None = None
    expires: dt.datetime | None = None


def refresh_due(issued: dt.datetime, expires: dt.datetime, moment: dt.datetime) -> bool:
    """A kubelet's rule: renew after 80 % of the token's life, or when it is a day old."""
    life = expires - issued
    return moment >= issued + min(life * 0.8, MAX_AGE)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write_private(partial, data)
    os.replace(partial, path)


def renew(core: client.CoreV1Api, token: ProjectedToken) -> None:
    """Ask the TokenRequest API for a token bound to the pod and put it in place."""
    spec = client.V1TokenRequestSpec(
        audiences=[token.audience] if token.audience else [],
        expiration_seconds=token.expiration_s,
        bound_object_ref=client.V1BoundObjectReference(
            kind="Pod", api_version="v1", name=token.pod, uid=token.pod_uid
        ),
    )
    answer = core.create_namespaced_service_account_token(
        token.service_account,
        token.namespace,
        client.AuthenticationV1TokenRequest(spec=spec),
        _request_timeout=API_TIMEOUT,
    )
    token.path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(token.path, answer.status.token.encode())
    token.issued = now()
    token.expires = answer.status.expiration_timestamp
    logger.info(
        "token for %s/%s (service account %s) valid until %s",
        token.namespace,
        token.pod,
        token.service_account,
        token.expires,
    )


def _items(data: dict[str, str], items: list[Any] | None) -> dict[str, str]:
    """Key -> file name of a ConfigMap or Secret projection (every key without ``items``)."""
    if not items:
        return {key: key for key in data}
    return {item.key: item.path for item in items if item.key in data}


def _field(path: str, pod: Any) -> str:
    values: dict[str, str] = {
        "metadata.namespace": pod.metadata.namespace,
        "metadata.name": pod.metadata.name,
        "metadata.uid": pod.metadata.uid,
        "spec.serviceAccountName": pod.spec.service_account_name or "default",
        "spec.nodeName": pod.spec.node_name or "",
    }
    return values.get(path, "")


def fill(
    core: client.CoreV1Api, pod: Any, volume: Any, target: Path
) -> list[ProjectedToken] | None:
    """Fill projected ``volume`` into ``target``; its tokens, or None while a source is
    missing (a ConfigMap or Secret not made yet: the pod waits, as with a kubelet)."""
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)
    namespace = pod.metadata.namespace
    tokens: list[ProjectedToken] = []
    for source in volume.projected.sources or []:
        if source.service_account_token is not None:
            spec = source.service_account_token
            token = ProjectedToken(
                path=target / spec.path,
                namespace=namespace,
                service_account=pod.spec.service_account_name or "default",
                pod=pod.metadata.name,
                pod_uid=pod.metadata.uid,
                audience=spec.audience or "",
                expiration_s=int(spec.expiration_seconds or 3600),
            )
            renew(core, token)
            tokens.append(token)
        elif source.config_map is not None:
            ref = source.config_map
            try:
                cm = core.read_namespaced_config_map(
                    ref.name, namespace, _request_timeout=API_TIMEOUT
                )
            except ApiException as exc:
                if exc.status == 404 and not ref.optional:
                    return None
                raise
            data = cm.data or {}
            for key, name in _items(data, ref.items).items():
                _write_atomic(target / name, data[key].encode())
        elif source.secret is not None:
            ref = source.secret
            secret = core.read_namespaced_secret(ref.name, namespace, _request_timeout=API_TIMEOUT)
            raw = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            for key, name in _items(raw, ref.items).items():
                _write_atomic(target / name, raw[key].encode())
        elif source.downward_api is not None:
            for item in source.downward_api.items or []:
                if item.field_ref is not None:
                    _write_atomic(
                        target / item.path, _field(item.field_ref.field_path, pod).encode()
                    )
    return tokens
