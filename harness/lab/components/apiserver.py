"""kube-apiserver: RBAC, service accounts signed by the lab's key, the slot's Service range."""

from __future__ import annotations

from harness.lab.components.base import Component, Site, https_ok
from harness.lab.paths import HOST, service_cidr

ADMISSION_PLUGINS = (
    "NamespaceLifecycle,ServiceAccount,DefaultTolerationSeconds,DefaultStorageClass,"
    "StorageObjectInUseProtection,TaintNodesByCondition,Priority"
)
ISSUER = "https://kubernetes.default.svc.cluster.local"


def args(site: Site) -> list[str]:
    pki = site.paths.pki
    return [
        str(site.bin / "kube-apiserver"),
        f"--etcd-servers=http://{HOST}:{site.ports.etcd_client}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={site.ports.apiserver}",
        f"--cert-dir={pki / 'apiserver-generated'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={service_cidr(site.ports.slot)}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        "--endpoint-reconciler-type=none",  # loopback advertise address
        # projected tokens live as long as asked (a kubelet renews them), not a year
        "--service-account-extend-token-expiration=false",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
        "--storage-media-type=application/json",
    ]


def component(site: Site) -> Component:
    return Component(
        "kube-apiserver",
        args(site),
        lambda: https_ok(f"https://{HOST}:{site.ports.apiserver}/readyz", site.paths),
        start_timeout_s=90.0,
    )
