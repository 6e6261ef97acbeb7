"""kube-scheduler."""

from __future__ import annotations

from harness.lab.components.base import Component, Site, https_ok
from harness.lab.paths import HOST


def args(site: Site) -> list[str]:
    kubeconfig = site.paths.kubeconfig_for("scheduler")
    return [
        str(site.bin / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={site.ports.scheduler}",
        f"--cert-dir={site.paths.pki / 'scheduler-generated'}",
        "--leader-elect=false",
        "--v=1",
    ]


def component(site: Site) -> Component:
    return Component(
        "kube-scheduler",
        args(site),
        lambda: https_ok(f"https://{HOST}:{site.ports.scheduler}/healthz", site.paths),
    )
