"""Start, inspect and stop the lab: a real control plane with process-backed nodes.

``up`` starts, in order: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, one node agent per node, the service proxy; then applies the
topology, waits for the nodes to be Ready and the state authority to serve S3,
seeds the state bucket and writes ``.lab/kubeconfig`` and ``.lab/env``.
Components run detached (own process groups, logs in ``.lab/logs``); their
PIDs are kept in ``.lab/state.json`` so that ``down`` stops them, in reverse
order, from another process. When a start fails halfway, everything started
so far is stopped and the error carries the component's last output.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flywheel_chaos import power
from flywheel_chaos.s3.authority import load_authority
from flywheel_chaos.s3.checks import CHECKS
from flywheel_chaos.s3.client import s3_client
from flywheel_chaos.s3.errors import StateAuthorityError
from harness.errors import ConfigError, HarnessError
from harness.lab.build import BINARIES, REPO, build, missing_binaries, rustfs_built
from harness.lab.paths import (
    ETCD_VERSION,
    HOST,
    KUBERNETES_VERSION,
    NODE_MONITOR_GRACE_PERIOD_S,
    NODES,
    RUSTFS_VERSION,
    LabPaths,
    Ports,
    bin_dir,
    free_ports,
    service_address,
    service_cidr,
)
from harness.lab.pki import ensure_pki, write_kubeconfig
from harness.lab.seaweed import s3_identity_config
from harness.processes import (
    ManagedProcess,
    StartError,
    pid_alive,
    port_free,
    retry_until,
    stop_pid_group,
    wait_until,
    write_private,
)

TOPOLOGIES = REPO / "lab" / "topologies"
TOPOLOGY_ALIASES = {"ha": "ha-seaweedfs"}


def _commands(document: Any) -> list[str]:
    """First words of every container command in a manifest (any workload kind)."""
    if isinstance(document, dict):
        found = []
        if isinstance(document.get("command"), list) and document["command"]:
            found.append(str(document["command"][0]))
        for value in document.values():
            found += _commands(value)
        return found
    if isinstance(document, list):
        return [c for item in document for c in _commands(item)]
    return []


def needs_rustfs(topology: str) -> bool:
    """Whether a topology runs RustFS (a container whose command is ``rustfs``)."""
    directory = TOPOLOGIES / TOPOLOGY_ALIASES.get(topology, topology)
    return any(
        Path(command).name == "rustfs"
        for path in directory.glob("*.yaml")
        for document in yaml.safe_load_all(path.read_text())
        for command in _commands(document)
    )


"""Old names that still work for one release: ``ha`` is ``ha-seaweedfs`` now."""
STATE_NAMESPACE = "nix-cache"
STATE_SERVICE = "attic-rustfs-openebs"
STATE_BUCKET = "tofu-state"
BACKUP_BUCKET = "tofu-state-backup"
STATE_KEY = "gloriousflywheel/platform/terraform.tfstate"
SEED_TIMEOUT_S = 120.0
"""How long ``up`` waits for the state authority to serve reads and writes."""
SEED_STATE = (
    b'{"version": 4, "terraform_version": "1.12.2", "serial": 42, '
    b'"lineage": "flywheel-lab-seed", "outputs": {}, "resources": []}\n'
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Component:
    """One lab process: how to start it and how to know it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0


def _insecure_https(url: str, paths: LabPaths, timeout_s: float = 1.0) -> bool:
    context = ssl.create_default_context(cafile=None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(Exception):
        context.load_cert_chain(paths.pki / "admin.crt", paths.pki / "admin.key")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Lab:
    """One lab directory and the processes that serve it."""

    def __init__(
        self, paths: LabPaths, topology: str | None = None, ports: Ports | None = None
    ) -> None:
        self.paths = paths
        # without a choice: the topology the lab's kept data belongs to, else interim
        wanted = topology or self.read_state().get("topology") or "interim"
        self.topology = TOPOLOGY_ALIASES.get(wanted, wanted)
        self.bin = bin_dir()
        kept = self.read_state().get("port_offset")
        # the ports this lab was started on (its state says), else the environment's
        self.ports = ports or (Ports(int(kept)) if kept is not None else Ports.from_env())

    # ---------------------------------------------------------- state ---

    def read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.paths.state.read_text())
            return state
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.paths.state)

    def running_components(self) -> list[dict[str, Any]]:
        return [c for c in self.read_state().get("components", []) if pid_alive(int(c["pid"]))]

    def is_up(self) -> bool:
        state = self.read_state()
        components = state.get("components", [])
        return bool(components) and all(pid_alive(int(c["pid"])) for c in components)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with self.paths.lock().open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConfigError(
                    f"another lab command is running on {self.paths.root}",
                    "wait for it to finish",
                ) from exc
            yield

    # ------------------------------------------------------ components ---

    def _kubeconfig(self, client: str) -> Path:
        return self.paths.kubeconfig_for(client)

    def components(self) -> list[Component]:
        p, b = self.paths, self.bin
        python = sys.executable
        nodes_file = TOPOLOGIES / self.topology / "nodes.yaml"
        comps = [
            Component(
                "etcd",
                [
                    str(b / "etcd"),
                    "--name=flywheel-lab",
                    f"--data-dir={p.etcd_data}",
                    f"--listen-client-urls=http://{HOST}:{self.ports.etcd_client}",
                    f"--advertise-client-urls=http://{HOST}:{self.ports.etcd_client}",
                    f"--listen-peer-urls=http://{HOST}:{self.ports.etcd_peer}",
                    f"--initial-advertise-peer-urls=http://{HOST}:{self.ports.etcd_peer}",
                    f"--initial-cluster=flywheel-lab=http://{HOST}:{self.ports.etcd_peer}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                    "--quota-backend-bytes=1073741824",
                ],
                lambda: _http_ok(f"http://{HOST}:{self.ports.etcd_client}/health"),
            ),
            Component(
                "kube-apiserver",
                [
                    str(b / "kube-apiserver"),
                    f"--etcd-servers=http://{HOST}:{self.ports.etcd_client}",
                    f"--bind-address={HOST}",
                    f"--advertise-address={HOST}",
                    f"--secure-port={self.ports.apiserver}",
                    f"--cert-dir={p.pki / 'apiserver-generated'}",
                    f"--tls-cert-file={p.pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={p.pki / 'apiserver.key'}",
                    f"--client-ca-file={p.pki / 'ca.crt'}",
                    "--authorization-mode=RBAC",
                    f"--service-cluster-ip-range={service_cidr(self.ports.slot)}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={p.pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={p.pki / 'sa.key'}",
                    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultTolerationSeconds,"
                    "DefaultStorageClass,StorageObjectInUseProtection,TaintNodesByCondition,Priority",
                    "--endpoint-reconciler-type=none",  # loopback advertise address
                    "--allow-privileged=true",
                    "--profiling=false",
                    "--v=1",
                    "--storage-media-type=application/json",
                ],
                lambda: _insecure_https(f"https://{HOST}:{self.ports.apiserver}/readyz", p),
                start_timeout_s=90.0,
            ),
            Component(
                "kube-controller-manager",
                [
                    str(b / "kube-controller-manager"),
                    f"--kubeconfig={self._kubeconfig('controller-manager')}",
                    f"--authentication-kubeconfig={self._kubeconfig('controller-manager')}",
                    f"--authorization-kubeconfig={self._kubeconfig('controller-manager')}",
                    f"--bind-address={HOST}",
                    f"--secure-port={self.ports.controller_manager}",
                    f"--cert-dir={p.pki / 'controller-manager-generated'}",
                    "--leader-elect=false",
                    f"--root-ca-file={p.pki / 'ca.crt'}",
                    f"--service-account-private-key-file={p.pki / 'sa.key'}",
                    "--use-service-account-credentials=true",
                    f"--service-cluster-ip-range={service_cidr(self.ports.slot)}",
                    "--allocate-node-cidrs=false",
                    f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD_S}s",
                    "--node-monitor-period=1s",
                    "--controllers=*",
                    "--cluster-name=flywheel-lab",
                    "--v=1",
                ],
                lambda: _insecure_https(
                    f"https://{HOST}:{self.ports.controller_manager}/healthz", p
                ),
            ),
            Component(
                "kube-scheduler",
                [
                    str(b / "kube-scheduler"),
                    f"--kubeconfig={self._kubeconfig('scheduler')}",
                    f"--authentication-kubeconfig={self._kubeconfig('scheduler')}",
                    f"--authorization-kubeconfig={self._kubeconfig('scheduler')}",
                    f"--bind-address={HOST}",
                    f"--secure-port={self.ports.scheduler}",
                    f"--cert-dir={p.pki / 'scheduler-generated'}",
                    "--leader-elect=false",
                    "--v=1",
                ],
                lambda: _insecure_https(f"https://{HOST}:{self.ports.scheduler}/healthz", p),
            ),
        ]
        for node in NODES:
            ready_file = p.node_dir(node) / "agent.ready"
            # the node agent runs under its node's power supervisor (the lab's hypervisor:
            # freeze, power off, power on), which is the component the lab starts and stops
            comps.append(
                Component(
                    f"node-agent-{node}",
                    [
                        python,
                        "-m",
                        "harness.lab.power",
                        f"--node={node}",
                        f"--lab-dir={p.root}",
                        f"--agent-log={p.logs / f'node-agent-{node}.agent.log'}",
                        "--",
                        python,
                        "-m",
                        "harness.lab.nodeagent",
                        f"--node={node}",
                        f"--slot={self.ports.slot}",
                        f"--lab-dir={p.root}",
                        f"--nodes-file={nodes_file}",
                        f"--kubeconfig={self._kubeconfig('node-agent')}",
                    ],
                    ready_file.exists,
                    stop_timeout_s=25.0,
                )
            )
        proxy_state = p.root / "service-proxy.json"
        comps.append(
            Component(
                "service-proxy",
                [
                    python,
                    "-m",
                    "harness.lab.serviceproxy",
                    f"--kubeconfig={self._kubeconfig('admin')}",
                    f"--state-file={proxy_state}",
                ],
                proxy_state.exists,
            )
        )
        return comps

    # -------------------------------------------------------------- up ---

    def _preflight(self) -> None:
        missing = missing_binaries(self.bin)
        if missing:
            raise ConfigError(
                f"lab binaries missing from {self.bin}: {', '.join(missing)}",
                "run 'flywheel-chaos lab build' first (it takes a few minutes, once)",
            )
        if needs_rustfs(self.topology) and not rustfs_built(self.bin):
            raise ConfigError(
                f"topology {self.topology} runs RustFS {RUSTFS_VERSION}, which is not built",
                "run 'flywheel-chaos lab build --rustfs' first (about an hour on 2 cores, once), "
                "or use topology interim-seaweedfs",
            )
        if not (TOPOLOGIES / self.topology).is_dir():
            known = ", ".join(sorted(d.name for d in TOPOLOGIES.iterdir() if d.is_dir()))
            raise ConfigError(f"unknown topology {self.topology!r}", f"choose one of: {known}")
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
                self._down_unlocked(progress)
            self._preflight()
            started = time.monotonic()
            creds = self._prepare_files()
            state: dict[str, Any] = {
                "topology": self.topology,
                "port_offset": self.ports.offset,
                "versions": {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION},
                "components": [],
                "started_at": time.time(),
            }
            timings: dict[str, float] = {}
            try:
                for component in self.components():
                    t0 = time.monotonic()
                    process = ManagedProcess(
                        name=component.name,
                        argv=component.argv,
                        log_path=self.paths.logs / f"{component.name}.log",
                        healthy=component.healthy,
                        start_timeout_s=component.start_timeout_s,
                        stop_timeout_s=component.stop_timeout_s,
                        cwd=REPO,
                    )
                    process.start()
                    assert process.pid is not None
                    state["components"].append(
                        {
                            "name": component.name,
                            "pid": process.pid,
                            "stop_timeout_s": component.stop_timeout_s,
                        }
                    )
                    self._write_state(state)
                    timings[component.name] = round(time.monotonic() - t0, 2)
                    progress(
                        f"{component.name} healthy in {timings[component.name]:.1f}s (pid {process.pid})"
                    )
                endpoint = self._apply_topology(creds, progress)
                self._seed(endpoint, creds, progress)
            except StartError as exc:
                self._down_unlocked(lambda _: None)
                raise HarnessError(
                    f"lab component {exc.name} did not start: {exc.reason}",
                    f"its log is {self.paths.logs / (exc.name + '.log')}; everything started was stopped",
                    details=exc.output_tail,
                ) from exc
            except BaseException:
                self._down_unlocked(lambda _: None)
                raise
            state["endpoint"] = endpoint
            state["up_seconds"] = round(time.monotonic() - started, 2)
            state["component_seconds"] = timings
            self._write_state(state)
            self._write_env(endpoint, creds)
            return self.status()

    def kubectl(
        self, *args: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        kubectl = Path(sys.executable).parent / "kubectl"
        argv = [
            str(kubectl if kubectl.exists() else "kubectl"),
            f"--kubeconfig={self.paths.kubeconfig}",
            "--request-timeout=20s",
            *args,
        ]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(shlex.quote(a) for a in args[:3])} failed",
                "see the lab logs in " + str(self.paths.logs),
                details=(result.stderr or result.stdout).strip()[-2000:],
            )
        return result

    def _apply_topology(self, creds: dict[str, str], progress: Progress) -> str:
        directory = TOPOLOGIES / self.topology
        files = sorted(f for f in directory.glob("*.yaml") if f.name != "nodes.yaml")
        crds = [f for f in files if f.name.startswith("00-")]
        rest = [f for f in files if f not in crds]
        for path in crds:
            self.kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(path))
        if crds:
            self.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", timeout_s=70
            )
        wait_until(
            lambda: (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            60,
            "the controller manager to create the default ServiceAccount",
        )
        for path in rest:
            if path.name.startswith("20-"):
                self._ensure_secret(creds)
            self.kubectl("apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(path))
        progress(f"topology {self.topology} applied")
        self.kubectl(
            "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s", timeout_s=70
        )
        progress("nodes Ready: " + ", ".join(NODES))
        cluster_ip = self.kubectl(
            "get",
            "service",
            STATE_SERVICE,
            "-n",
            STATE_NAMESPACE,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ).stdout.strip()
        endpoint = f"http://{service_address(cluster_ip)}:9000"
        if (
            self.kubectl(
                "get", f"deployment/{STATE_SERVICE}", "-n", STATE_NAMESPACE, check=False
            ).returncode
            == 0
        ):
            self.kubectl(
                "rollout",
                "status",
                f"deployment/{STATE_SERVICE}",
                "-n",
                STATE_NAMESPACE,
                "--timeout=120s",
                timeout_s=130,
            )
        # otherwise (StatefulSets: ha-rustfs) the seed waits until S3 serves
        return endpoint

    def _ensure_secret(self, creds: dict[str, str]) -> None:
        document = s3_identity_config(creds["access_key"], creds["secret_key"])
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "attic-rustfs-credentials", "namespace": STATE_NAMESPACE},
            "type": "Opaque",
            "data": {
                "s3.json": base64.b64encode(json.dumps(document).encode()).decode(),
                "access-key": base64.b64encode(creds["access_key"].encode()).decode(),
                "secret-key": base64.b64encode(creds["secret_key"].encode()).decode(),
            },
        }
        manifest = self.paths.root / "secret.yaml"
        write_private(manifest, yaml.safe_dump(secret))
        try:
            self.kubectl(
                "apply", "--server-side", "--field-manager=flywheel-lab", "-f", str(manifest)
            )
        finally:
            manifest.unlink()

    def _seed(self, endpoint: str, creds: dict[str, str], progress: Progress) -> None:
        """Wait until the state authority serves reads *and* writes, then seed it.

        A replicated SeaweedFS answers ListBuckets before its masters have
        grown volumes on two racks, so the first write can hang for seconds
        on a busy machine: every step is retried (each attempt bounded by the
        client's timeouts) until :data:`SEED_TIMEOUT_S`. Writes are proven by
        the probes' own canary check; the state key is written only when the
        probes' HEAD says it is absent, so a write that timed out but landed
        is not written twice.
        """
        authority = load_authority(
            endpoint=endpoint,
            bucket=STATE_BUCKET,
            key=STATE_KEY,
            region="us-east-1",
            timeout_s=10.0,
            secrets={
                "aws_access_key_id": creds["access_key"],
                "aws_secret_access_key": creds["secret_key"],
            },
            environ={},
        ).with_overrides(read_timeout_s=5.0)
        s3 = s3_client(authority)
        check = {spec.name: spec.run for spec in CHECKS}
        started = time.monotonic()

        def left() -> float:
            return max(1.0, SEED_TIMEOUT_S - (time.monotonic() - started))

        def buckets_ready() -> None:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            for name in (STATE_BUCKET, BACKUP_BUCKET):
                if name not in existing:
                    s3.create_bucket(Bucket=name)
            s3.put_bucket_versioning(
                Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )

        def seeded() -> bool:
            try:
                check["state-key-head"](authority)
                return False
            except StateAuthorityError as exc:
                if exc.error_class != "no-such-key":
                    raise
            s3.put_object(Bucket=STATE_BUCKET, Key=STATE_KEY, Body=SEED_STATE)
            return True

        try:
            retry_until(buckets_ready, left(), f"creating the lab's buckets at {endpoint}")
            progress(f"S3 answers at {endpoint} after {time.monotonic() - started:.1f}s")
            retry_until(
                lambda: check["canary-write-read-delete"](authority),
                left(),
                f"a canary write and read at {endpoint}",
            )
            progress(f"S3 accepts writes after {time.monotonic() - started:.1f}s")
            if retry_until(seeded, left(), f"seeding s3://{STATE_BUCKET}/{STATE_KEY}"):
                progress(f"seeded s3://{STATE_BUCKET}/{STATE_KEY}")

            def backed_up() -> None:
                # what an operator's backup job leaves: a copy of the state key in the
                # backup bucket (the backup-restore proof checks it against the key)
                s3.copy_object(
                    Bucket=BACKUP_BUCKET,
                    Key=STATE_KEY,
                    CopySource={"Bucket": STATE_BUCKET, "Key": STATE_KEY},
                )

            retry_until(backed_up, left(), f"backing s3://{STATE_BUCKET}/{STATE_KEY} up")
        except TimeoutError as error:
            raise HarnessError(
                f"the state authority did not serve S3 at {endpoint}: {error}",
                f"see the pods' logs under {self.paths.root / 'nodes'}; everything started was stopped",
            ) from error
        progress(f"state authority serves S3 at {endpoint}")

    def env_lines(self, endpoint: str, creds: dict[str, str]) -> list[str]:
        values = {
            "KUBECONFIG": str(self.paths.kubeconfig),
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": creds["access_key"],
            "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
            "TOFU_STATE_BUCKET": STATE_BUCKET,
            "TOFU_STATE_KEY": STATE_KEY,
            "TOFU_STATE_BACKUP_BUCKET": BACKUP_BUCKET,
            "FLYWHEEL_EVIDENCE_DIR": str(REPO / "evidence"),
            "FLYWHEEL_LAB_DIR": str(self.paths.root),
            "FLYWHEEL_STATE_DIR": str(REPO / ".flywheel"),
            # the experiments ship no allowlist: the lab allows its own nodes and namespace
            "FLYWHEEL_NODE_ALLOWLIST": ",".join(NODES),
            "FLYWHEEL_NAMESPACE_ALLOWLIST": STATE_NAMESPACE,
        }
        return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]

    def env_values(self) -> dict[str, str]:
        """The variables ``.lab/env`` exports (empty when the lab never came up)."""
        values: dict[str, str] = {}
        try:
            lines = self.paths.env_file.read_text().splitlines()
        except OSError:
            return values
        for line in lines:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                values[name] = shlex.split(value)[0] if value else ""
        return values

    def _write_env(self, endpoint: str, creds: dict[str, str]) -> None:
        text = "# written by flywheel-chaos lab up: source it, then run chaos or flywheel-chaos\n"
        text += "\n".join(self.env_lines(endpoint, creds)) + "\n"
        write_private(self.paths.env_file, text)

    # ------------------------------------------------------------ down ---

    def pod_pids(self) -> list[int]:
        pids = []
        for pid_file in self.paths.root.glob("nodes/*/pods/*/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pid_file.read_text()))
        return pids

    def down(self, progress: Progress, clean: bool = False) -> None:
        with self._locked():
            self._down_unlocked(progress)
            if clean:
                for name in (
                    "etcd",
                    "nodes",
                    "pki",
                    "kubeconfigs",
                    "credentials.json",
                    "env",
                    "kubeconfig",
                    "state.json",
                    "logs",
                    "service-proxy.json",
                ):
                    target = self.paths.root / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                progress(f"removed lab data in {self.paths.root}")

    def _down_unlocked(self, progress: Progress) -> None:
        state = self.read_state()
        components = state.get("components", [])
        # a frozen node (lab node stop) must be thawed to hear SIGTERM
        for pid in [int(c["pid"]) for c in components] + self.pod_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGCONT)
        for component in reversed(components):
            pid = int(component["pid"])
            if pid_alive(pid):
                stop_pid_group(pid, grace_s=float(component.get("stop_timeout_s", 10)))
                progress(f"stopped {component['name']} (pid {pid})")
        for pid in self.pod_pids():  # pods of an agent that died without cleaning up
            if pid_alive(pid):
                stop_pid_group(pid, grace_s=3)
                progress(f"stopped leftover pod process {pid}")
        for pid_file in self.paths.root.glob("nodes/*/pods/*/*.pid"):
            pid_file.unlink()
        if state:
            state["components"] = []
            state["stopped_at"] = time.time()
            self._write_state(state)

    # ---------------------------------------------------------- status ---

    def status(self) -> dict[str, Any]:
        state = self.read_state()
        checks = {c.name: c.healthy for c in self.components()}
        components = []
        for component in state.get("components", []):
            pid = int(component["pid"])
            running, frozen = pid_alive(pid), _frozen(pid)
            power = ""
            if component["name"].startswith("node-agent-"):
                power = self.node_state(component["name"].removeprefix("node-agent-")).get(
                    "state", ""
                )
                frozen = frozen or power == "frozen"
            check = checks.get(component["name"])
            components.append(
                {
                    "name": component["name"],
                    "pid": pid,
                    "running": running,
                    "frozen": frozen,
                    "power": power or None,
                    # node agents and the proxy report readiness once; the rest answer live
                    "healthy": bool(
                        running and not frozen and power != "off" and (check() if check else True)
                    ),
                }
            )
        nodes: list[dict[str, Any]] = []
        if components and all(c["running"] for c in components[:2]):
            result = self.kubectl("get", "nodes", "-o", "json", check=False, timeout_s=15)
            if result.returncode == 0:
                for item in json.loads(result.stdout).get("items", []):
                    ready: dict[str, Any] = next(
                        (c for c in item["status"].get("conditions", []) if c["type"] == "Ready"),
                        {},
                    )
                    nodes.append(
                        {
                            "name": item["metadata"]["name"],
                            "ready": ready.get("status", "Unknown"),
                            "unschedulable": bool(item["spec"].get("unschedulable")),
                            "taints": [
                                f"{t['key']}:{t['effect']}" for t in item["spec"].get("taints", [])
                            ],
                        }
                    )
        return {
            "lab_dir": str(self.paths.root),
            "topology": state.get("topology"),
            "versions": state.get(
                "versions", {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION}
            ),
            "up": bool(components) and all(c["running"] for c in components),
            "components": components,
            "nodes": nodes,
            "endpoints": {
                "kube-apiserver": f"https://{HOST}:{self.ports.apiserver}",
                "s3": state.get("endpoint"),
                "kubeconfig": str(self.paths.kubeconfig),
                "env": str(self.paths.env_file),
            },
            "up_seconds": state.get("up_seconds"),
            "binaries": {name: str(self.bin / name) for name in BINARIES},
        }

    # ----------------------------------------------------------- nodes ---

    def _power(self, node: str, want: power.PowerWant) -> dict[str, Any]:
        if node not in NODES:
            raise ConfigError(f"no lab node named {node!r}", f"lab nodes are: {', '.join(NODES)}")
        if not self.is_up():
            raise ConfigError("the lab is not running", "run 'flywheel-chaos lab up' first")
        try:
            return dict(power.request(self.paths.root, node, want))
        except Exception as exc:  # ActivityFailed from the shared contract
            raise HarnessError(
                f"lab node {node} did not {want}: {exc}", "see flywheel-chaos lab status"
            ) from exc

    def node_state(self, node: str) -> dict[str, Any]:
        """What the node's power supervisor last said (``state``: running, frozen or off)."""
        try:
            loaded: dict[str, Any] = json.loads(
                (self.paths.node_dir(node) / power.POWER_STATE).read_text()
            )
            return loaded
        except (OSError, ValueError):
            return {}

    def node_stop(self, node: str) -> list[int]:
        """Freeze a node: its agent stops heartbeating and its pods stop answering (a hung node)."""
        state = self._power(node, "freeze")
        return [p for p in [state.get("agent_pid"), *state.get("pods", [])] if p]

    def node_crash(self, node: str) -> list[int]:
        """Power a node off: its agent and pods are killed (SIGKILL), their objects stay."""
        killed: list[int] = self._power(node, "off").get("killed", [])
        return killed

    def node_start(self, node: str) -> list[int]:
        """Thaw a frozen node, or power a crashed one on (its pods restart as after a boot)."""
        state = self._power(node, "on")
        return [p for p in [state.get("agent_pid"), *state.get("pods", [])] if p]


def _frozen(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] == "T"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def scratch_lab(root: Path, topology: str = "interim") -> Iterator[Lab]:
    """A fresh lab in ``root`` (binaries built first if missing), stopped and removed after.

    For tests and benchmarks: whatever ``root`` held is removed before and after;
    it runs on a free lab slot of its own (:func:`~harness.lab.paths.free_ports`),
    never the default lab's ports or addresses, so it coexists with a running
    ``just demo`` lab.
    """
    build(rustfs=needs_rustfs(topology))
    shutil.rmtree(root, ignore_errors=True)
    lab = Lab(LabPaths(root), topology=topology, ports=free_ports())
    lab.up(lambda message: None)
    try:
        yield lab
    finally:
        lab.down(lambda message: None)
        shutil.rmtree(root, ignore_errors=True)
