"""The lab's processes, one module each with the one builder of its arguments.

As envtest's ``controlplane/etcd.go`` and ``apiserver.go`` have it: each module holds its
component's arguments (``args``) and its health check (``healthy``); :func:`all_components`
lists them in start order. ``harness.lab.plane`` starts and stops them.
"""

from __future__ import annotations

from harness.lab.components import (
    apiserver,
    controller_manager,
    etcd,
    node_agent,
    scheduler,
    service_proxy,
)
from harness.lab.components.base import Component, Site

__all__ = ["Component", "Site", "all_components"]


def all_components(site: Site) -> list[Component]:
    """Every component in start order (stopped in the reverse order)."""
    return [
        etcd.component(site),
        apiserver.component(site),
        controller_manager.component(site),
        scheduler.component(site),
        *node_agent.components(site),
        service_proxy.component(site),
    ]
