"""The service proxy (our kube-proxy): Services on their loopback twins."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.lab.components.base import Component, Site
from harness.lab.paths import HOST


def state_file(site: Site) -> Path:
    return site.paths.root / "service-proxy.json"


def args(site: Site) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.lab.serviceproxy",
        f"--kubeconfig={site.paths.kubeconfig_for('admin')}",
        f"--state-file={state_file(site)}",
        f"--apiserver={HOST}:{site.ports.apiserver}",
    ]


def component(site: Site) -> Component:
    return Component("service-proxy", args(site), state_file(site).exists)
