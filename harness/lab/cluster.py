"""The lab: a real control plane with process-backed nodes, as one object.

``up`` starts, in order (:mod:`harness.lab.components`, :mod:`harness.lab.plane`): etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, one node agent per node, the
service proxy; then applies the topology (:mod:`harness.lab.topology`), waits for the
nodes and the state authority, seeds it (:mod:`harness.lab.seed`) and writes
``.lab/kubeconfig`` and ``.lab/env`` (:mod:`harness.lab.envfile`). Components run detached
(own process groups, logs in ``.lab/logs``); their PIDs are kept in ``.lab/state.json`` so
that ``down`` stops them, in reverse order, from another process. When a start fails
halfway, everything started so far is stopped and the error carries the component's last
output.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flywheel_chaos import power
from harness.errors import ConfigError, HarnessError
from harness.lab import envfile, nodepower, plane, seed, status, topology
from harness.lab.build import missing_binaries, rustfs_built
from harness.lab.components import Component, Site, all_components
from harness.lab.kubectl import run_kubectl
from harness.lab.paths import (
    ETCD_VERSION,
    HOST,
    KUBERNETES_VERSION,
    NODES,
    RUSTFS_VERSION,
    LabPaths,
    Ports,
    bin_dir,
)
from harness.lab.pki import ensure_pki, write_kubeconfig
from harness.lab.topology import STATE_NAMESPACE as STATE_NAMESPACE
from harness.lab.topology import canonical as topology_name
from harness.lab.variants import load_variant, split
from harness.processes import StartError, pid_alive, port_free, write_private
from harness.record.signing import generate

Progress = Callable[[str], None]
CLEAN = (
    "etcd",
    "nodes",
    "pki",
    "kubeconfigs",
    "credentials.json",
    "evidence-store.json",
    "env",
    "kubeconfig",
    "state.json",
    "logs",
    "service-proxy.json",
    "stack",
    "variant",
)
"""What ``down --clean`` removes from a lab directory (nothing else in it: the evidence key
pair in ``keys/`` stays, so that evidence signed before a clean start still verifies)."""


class Lab:
    """One lab directory and the processes that serve it."""

    def __init__(
        self,
        paths: LabPaths,
        topology: str | None = None,
        ports: Ports | None = None,
        bin: Path | None = None,
    ) -> None:
        self.paths = paths
        # without a choice: the topology the lab's kept data belongs to, else interim
        self.topology = topology_name(topology or self.read_state().get("topology") or "interim")
        self.bin = bin or bin_dir()
        kept = self.read_state().get("port_offset")
        # the ports this lab was started on (its state says), else the environment's
        self.ports = ports or (Ports(int(kept)) if kept is not None else Ports.from_env())

    # ---------------------------------------------------------- state ---

    def read_state(self) -> dict[str, Any]:
        return plane.read_state(self.paths)

    def running_components(self) -> list[dict[str, Any]]:
        return [c for c in self.read_state().get("components", []) if pid_alive(int(c["pid"]))]

    def is_up(self) -> bool:
        components = self.read_state().get("components", [])
        return bool(components) and all(pid_alive(int(c["pid"])) for c in components)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with self.paths.lock().open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConfigError(
                    f"another lab command is running on {self.paths.root}", "wait for it to finish"
                ) from exc
            yield

    @property
    def site(self) -> Site:
        return Site(self.paths, self.ports, self.bin, topology.directory(self.topology))

    def components(self) -> list[Component]:
        return all_components(self.site)

    # -------------------------------------------------------------- up ---

    def preflight(self) -> None:
        """Refuse before anything starts: what was asked first, then what is missing."""
        if not topology.directory(self.topology).is_dir():
            known = ", ".join(topology.known())
            raise ConfigError(f"unknown topology {self.topology!r}", f"choose one of: {known}")
        _, variant = split(self.topology)
        if variant:
            load_variant(topology.directory(self.topology), variant)
        kept = self.read_state().get("topology")
        if kept and kept != self.topology and self.paths.etcd_data.exists():
            raise ConfigError(
                f"the lab in {self.paths.root} keeps the data of topology {kept!r}, not {self.topology!r}",
                f"'flywheel-chaos lab down --clean' first to start over, or 'lab up --topology {kept}'",
            )
        taken = [port for port in self.ports.all() if not port_free(HOST, port)]
        if taken:
            raise ConfigError(
                f"lab ports already in use on {HOST}: {', '.join(map(str, taken))}",
                "another lab (or another program) is running; 'flywheel-chaos lab down' in its directory, "
                "or stop what holds the port (ss -ltnp)",
            )
        missing = missing_binaries(self.bin)
        if missing:
            raise ConfigError(
                f"lab binaries missing from {self.bin}: {', '.join(missing)}",
                "run 'flywheel-chaos lab build' first (it takes a few minutes, once)",
            )
        if topology.needs_rustfs(self.topology) and not rustfs_built(self.bin):
            raise ConfigError(
                f"topology {self.topology} runs RustFS {RUSTFS_VERSION}, which is not built",
                "run 'flywheel-chaos lab build --rustfs' first (about an hour on 2 cores, once), "
                "or use topology interim-seaweedfs",
            )

    def _prepare_files(self) -> dict[str, str]:
        p = self.paths
        for directory in (p.root, p.logs):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_pki(p.pki)
        api = f"https://{HOST}:{self.ports.apiserver}"
        write_kubeconfig(p.kubeconfig, api, p.pki, "admin")
        for client in ("admin", "controller-manager", "scheduler", "node-agent"):
            write_kubeconfig(p.kubeconfig_for(client), api, p.pki, client)
        for node in NODES:
            with contextlib.suppress(FileNotFoundError):
                (p.node_dir(node) / "agent.ready").unlink()
        with contextlib.suppress(FileNotFoundError):
            (p.root / "service-proxy.json").unlink()
        if not p.credentials.exists():
            creds = {
                "access_key": "AKLAB" + secrets.token_hex(8).upper(),
                "secret_key": secrets.token_urlsafe(30),
            }
            write_private(p.credentials, json.dumps(creds))
        if not (p.root / "keys" / "evidence.key").exists():
            # the lab signs its evidence, so the gate's trust rule holds in the lab too
            generate(p.root / "keys", "evidence")
        loaded: dict[str, str] = json.loads(p.credentials.read_text())
        return loaded

    def up(self, progress: Progress) -> dict[str, Any]:
        """Start the lab; returns what status() returns. On a running lab changes nothing."""
        with self._locked():
            if self.is_up():
                running = self.read_state().get("topology")
                if running and running != self.topology:
                    progress(
                        f"the lab is already up with topology {running}; nothing changed "
                        "('lab down --clean' first to switch topology)"
                    )
                else:
                    progress("the lab is already up; nothing changed")
                return self.status()
            if self.read_state().get("components"):
                progress("a previous lab is partly running: stopping its leftovers first")
                plane.stop(self.paths, progress)
            self.preflight()
            self._start(progress)
            return self.status()

    def _start(self, progress: Progress) -> None:
        started = time.monotonic()
        creds = self._prepare_files()
        state: dict[str, Any] = {
            "topology": self.topology,
            "port_offset": self.ports.offset,
            "versions": {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION},
            "components": [],
            "started_at": time.time(),
        }
        try:
            timings = plane.start(self.components(), self.paths, state, progress)
            endpoint = topology.apply(self.kubectl, self.paths, self.topology, creds, progress)
            tofu = self.bin / "tofu"
            seed.seed(
                endpoint,
                creds,
                self.paths.root / "nodes",
                progress,
                self.paths.root,
                tofu if tofu.exists() else None,
            )
        except StartError as exc:
            plane.stop(self.paths, lambda _: None)
            raise HarnessError(
                f"lab component {exc.name} did not start: {exc.reason}",
                f"its log is {self.paths.logs / (exc.name + '.log')}; everything started was stopped",
                details=exc.output_tail,
            ) from exc
        except BaseException:
            plane.stop(self.paths, lambda _: None)
            raise
        state = {
            **self.read_state(),
            "endpoint": endpoint,
            "up_seconds": round(time.monotonic() - started, 2),
            "component_seconds": timings,
        }
        plane.write_state(self.paths, state)
        envfile.write(self.paths, endpoint, creds)

    def kubectl(
        self, *args: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.paths.kubeconfig, self.paths.logs, *args, check=check, timeout_s=timeout_s
        )

    def env_values(self) -> dict[str, str]:
        """The variables ``.lab/env`` exports (empty when the lab never came up)."""
        return envfile.read(self.paths)

    def pod_pids(self) -> list[int]:
        return plane.pod_pids(self.paths)

    # ------------------------------------------------------------ down ---

    def down(self, progress: Progress, clean: bool = False) -> None:
        with self._locked():
            plane.stop(self.paths, progress)
            if clean:
                for name in CLEAN:
                    target = self.paths.root / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                progress(f"removed lab data in {self.paths.root}")

    # ---------------------------------------------------------- status ---

    def status(self) -> dict[str, Any]:
        return status.report(self.read_state(), self.paths, self.ports, self.bin, self.components())

    # ----------------------------------------------------------- nodes ---

    def node_state(self, node: str) -> dict[str, Any]:
        """What the node's power supervisor last said (``state``: running, frozen or off)."""
        return dict(power.read_state(self.paths.root, node))

    def node_stop(self, node: str) -> list[int]:
        """Freeze a node: its agent stops heartbeating and its pods stop answering (a hung node)."""
        return nodepower.pids(nodepower.request(self.paths, node, "freeze", self.is_up()))

    def node_crash(self, node: str) -> list[int]:
        """Power a node off: its agent and pods are killed (SIGKILL), their objects stay."""
        state = nodepower.request(self.paths, node, "off", self.is_up())
        return [int(p) for p in state.get("killed", [])]

    def node_start(self, node: str) -> list[int]:
        """Thaw a frozen node, or power a crashed one on (its pods restart as after a boot)."""
        return nodepower.pids(nodepower.request(self.paths, node, "on", self.is_up()))
