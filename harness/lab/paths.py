"""Where the lab keeps things, its pinned versions and its loopback plan."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from flywheel_chaos import settings

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
TOFU_VERSION = "v1.12.6"
RUSTFS_VERSION = "1.0.1"

# Loopback plan (everything stays in 127.0.0.0/8):
#   control plane     127.0.0.1, fixed ports below
#   pods of node N    API address 10.244.N.X (bumble=1, honey=2, sting=3): the API
#                     refuses loopback pod IPs in EndpointSlices, so each pod IP
#                     has a loopback twin 127.244.N.X where its processes listen
#   Service clusterIP 10.96.A.B is served by the service proxy on 127.96.A.B
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    """The control plane's loopback ports; ``offset`` moves them all (FLYWHEEL_LAB_PORT_OFFSET)."""

    offset: int = 0

    @classmethod
    def from_env(cls) -> Ports:
        return cls(int(settings.FLYWHEEL_LAB_PORT_OFFSET.get() or 0))

    @property
    def slot(self) -> int:
        """Which lab this is on the machine (offset // 100): its pod and Service
        addresses are its own too, so labs with different slots never collide."""
        return self.offset // 100

    @property
    def etcd_client(self) -> int:
        return 22379 + self.offset

    @property
    def etcd_peer(self) -> int:
        return 22380 + self.offset

    @property
    def apiserver(self) -> int:
        return 26443 + self.offset

    @property
    def controller_manager(self) -> int:
        return 20257 + self.offset

    @property
    def scheduler(self) -> int:
        return 20259 + self.offset

    def all(self) -> tuple[int, ...]:
        return (
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
        )


SERVICE_CIDR = "10.96.0.0/16"
"""Service ClusterIPs of the default lab (slot 0); slot S uses 10.(96+S).0.0/16."""
SLOTS = 50
NODES = ("bumble", "honey", "sting")
NODE_MONITOR_GRACE_PERIOD_S = 10


def node_index(node: str) -> int:
    """1-based index of a lab node; its pods get 10.244.<index>.X (loopback twin 127.244.<index>.X)."""
    return NODES.index(node) + 1


def loopback_twin(ip: str) -> str:
    """The loopback address that stands for a lab pod IP or ClusterIP (10.A.B.C -> 127.A.B.C)."""
    return "127." + ip.split(".", 1)[1]


def service_address(cluster_ip: str) -> str:
    """The loopback address the service proxy serves a ClusterIP on."""
    return loopback_twin(cluster_ip)


def pod_network(node: str, slot: int = 0) -> str:
    """First three octets of the API pod addresses of ``node`` in lab ``slot``."""
    return f"10.244.{slot * 4 + node_index(node)}"


def service_cidr(slot: int = 0) -> str:
    """The Service ClusterIP range of lab ``slot`` (loopback twins 127.(96+slot).x.y)."""
    return f"10.{96 + slot}.0.0/16"


_CLAIMS: dict[int, int] = {}
"""Lab slots this process has claimed (slot -> the descriptor holding its lock)."""


def _claim(slot: int) -> bool:
    """Take slot ``slot``'s lock file for this process (non-blocking), so that two processes
    choosing a free slot at the same moment (parallel test workers, a benchmark beside the
    tests) never both take it; held until :func:`release_slot` or the process exits."""
    if slot in _CLAIMS:
        return False
    claims = cache_root() / "slots"
    claims.mkdir(parents=True, exist_ok=True)
    fd = os.open(claims / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _CLAIMS[slot] = fd
    return True


def release_slot(ports: Ports) -> None:
    """Give back a slot :func:`free_ports` claimed (a lab that is down no longer needs it)."""
    fd = _CLAIMS.pop(ports.slot, None)
    if fd is not None:
        os.close(fd)


def free_ports(host: str = "127.0.0.1") -> Ports:
    """Ports of a lab slot other than the default one whose ports are all free right now,
    claimed for this process (see :func:`_claim`).

    For test and benchmark labs: they never take the default lab's ports (or,
    through the slot, its pod and Service addresses), so both run side by side.
    """
    import random
    import socket

    def free(port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return False
            return True

    slots = list(range(1, SLOTS))
    random.shuffle(slots)
    for slot in slots:
        ports = Ports(slot * 100)
        if all(free(port) for port in ports.all()) and _claim(slot):
            return ports
    raise RuntimeError("no free lab slot: every lab port range on this machine is taken")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flywheel-chaos"


def bin_dir() -> Path:
    """Per-user binary cache, one directory per pinned version set."""
    return cache_root() / "bin" / f"kubernetes-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"


@dataclass(frozen=True)
class LabPaths:
    """Files of one lab (default ``.lab/``, or ``FLYWHEEL_LAB_DIR``)."""

    root: Path

    @classmethod
    def from_env(cls, override: str | None = None) -> LabPaths:
        return cls(Path(override or settings.FLYWHEEL_LAB_DIR.get() or ".lab").resolve())

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    def kubeconfig_for(self, component: str) -> Path:
        return self.root / "kubeconfigs" / f"{component}.kubeconfig"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def lock(self) -> Path:
        return self.root / "lab.lock"
