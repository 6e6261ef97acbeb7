"""etcd: the lab's one-member store, on loopback, without fsync (a lab's data is scratch)."""

from __future__ import annotations

from harness.lab.components.base import Component, Site, http_ok
from harness.lab.paths import HOST


def args(site: Site) -> list[str]:
    client, peer = site.ports.etcd_client, site.ports.etcd_peer
    return [
        str(site.bin / "etcd"),
        "--name=flywheel-lab",
        f"--data-dir={site.paths.etcd_data}",
        f"--listen-client-urls=http://{HOST}:{client}",
        f"--advertise-client-urls=http://{HOST}:{client}",
        f"--listen-peer-urls=http://{HOST}:{peer}",
        f"--initial-advertise-peer-urls=http://{HOST}:{peer}",
        f"--initial-cluster=flywheel-lab=http://{HOST}:{peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
        "--quota-backend-bytes=1073741824",
    ]


def component(site: Site) -> Component:
    return Component(
        "etcd", args(site), lambda: http_ok(f"http://{HOST}:{site.ports.etcd_client}/health")
    )
