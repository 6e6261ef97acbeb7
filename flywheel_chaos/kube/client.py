"""The Kubernetes client: ``KUBECONFIG``, else in-cluster configuration; one API timeout."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed
from kubernetes import client, config

from flywheel_chaos.errors import EXIT_USAGE

__all__ = ["API_TIMEOUT", "KubeconfigError", "api_client", "core_api"]

API_TIMEOUT: Final = (3.0, 10.0)
"""(connect, read) seconds of every API request that is not a watch."""


class KubeconfigError(ActivityFailed):  # type: ignore[misc]
    """No usable cluster configuration (exit 2: an environment error, not a verdict)."""

    exit_code = EXIT_USAGE
    hint = "set KUBECONFIG (for the lab: source .lab/env)"


def api_client(configuration: Mapping[str, Any] | None = None) -> client.ApiClient:
    """A client for ``configuration["kubeconfig"]``, ``KUBECONFIG``, or the pod's service account."""
    cfg = configuration or {}
    path = cfg.get("kubeconfig") or os.environ.get("KUBECONFIG")
    try:
        if path:
            return config.new_client_from_config(config_file=str(path))
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config()
    except Exception as exc:  # kubernetes raises several kinds
        raise KubeconfigError(
            f"configuration: cannot load a kubeconfig ({exc}) (hint: {KubeconfigError.hint})"
        ) from exc


def core_api(configuration: Mapping[str, Any] | None = None) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(configuration))
