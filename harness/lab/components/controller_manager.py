"""kube-controller-manager: every controller, a short node monitor grace period."""

from __future__ import annotations

from harness.lab.components.base import Component, Site, https_ok
from harness.lab.paths import HOST, NODE_MONITOR_GRACE_PERIOD_S, service_cidr


def args(site: Site) -> list[str]:
    kubeconfig = site.paths.kubeconfig_for("controller-manager")
    pki = site.paths.pki
    return [
        str(site.bin / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={site.ports.controller_manager}",
        f"--cert-dir={pki / 'controller-manager-generated'}",
        "--leader-elect=false",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={service_cidr(site.ports.slot)}",
        "--allocate-node-cidrs=false",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD_S}s",
        "--node-monitor-period=1s",
        "--controllers=*",
        "--cluster-name=flywheel-lab",
        "--v=1",
    ]


def component(site: Site) -> Component:
    return Component(
        "kube-controller-manager",
        args(site),
        lambda: https_ok(f"https://{HOST}:{site.ports.controller_manager}/healthz", site.paths),
    )
