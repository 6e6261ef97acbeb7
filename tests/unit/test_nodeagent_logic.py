"""Pure logic of the node agent: which host paths a private /tmp must keep, service links."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from harness.lab.nodeagent.links import service_links as _service_links
from harness.lab.nodeagent.runtime import _under_tmp


def test_paths_under_tmp_are_carried_once_by_their_first_component() -> None:
    assert _under_tmp(
        [
            Path("/tmp/clone/.lab-test"),
            Path("/tmp/clone/.venv/bin/weed"),
            Path("/tmp/other/etcd"),
            Path("/work/main/.lab"),
            Path("/tmpfoo/x"),
        ]
    ) == ["clone", "other"]


def test_nothing_is_carried_when_nothing_lives_under_tmp() -> None:
    assert _under_tmp([Path("/work/main/.lab"), Path("/root/.cache/bin/etcd")]) == []


def _service(name: str, cluster_ip: str, ports: list[tuple[str | None, int]]) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(
            cluster_ip=cluster_ip,
            ports=[client.V1ServicePort(name=n, port=p) for n, p in ports],
        ),
    )


def test_service_links_name_the_service_proxy_address_and_every_named_port() -> None:
    links = _service_links(
        [
            _service("seaweedfs-master-bumble", "10.96.3.7", [("http", 9333), ("grpc", 19333)]),
            _service("headless", "None", [("x", 1)]),
            _service("plain", "10.96.0.9", [(None, 80)]),
        ]
    )
    assert links == {
        "SEAWEEDFS_MASTER_BUMBLE_SERVICE_HOST": "127.96.3.7",
        "SEAWEEDFS_MASTER_BUMBLE_SERVICE_PORT": "9333",
        "SEAWEEDFS_MASTER_BUMBLE_SERVICE_PORT_HTTP": "9333",
        "SEAWEEDFS_MASTER_BUMBLE_SERVICE_PORT_GRPC": "19333",
        "PLAIN_SERVICE_HOST": "127.96.0.9",
        "PLAIN_SERVICE_PORT": "80",
    }
