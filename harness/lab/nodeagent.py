"""The lab's kubelet: one process per node (``python -m harness.lab.nodeagent --node bumble``).

It registers its Node with the topology's labels, renews the node Lease and
the Ready condition, and runs the pods bound to it:

* containers whose command is a program the lab knows (``weed``, and the
  lab's own ``etcd`` build) run as real
  local processes, bound to the loopback twin of the pod IP (10.244.N.X -> 127.244.N.X),
  each in a private mount namespace with its own /tmp when the host allows it;
* other containers are simulated as Running;
* volumes: a PVC bound to a node-local PV is a directory under
  ``.lab/nodes/<node>/volumes/<pv>``; emptyDir, Secret and ConfigMap volumes
  are materialised in the pod directory. A container's mount paths are
  rewritten to those directories in its args and env (there is no image
  filesystem to mount into);
* readiness from the readinessProbe (httpGet, tcpSocket), restarts per
  restartPolicy with a short backoff (1 s doubling to 10 s), counted;
* deletion as a kubelet does it: SIGTERM, the grace period, SIGKILL, then the
  pod object is removed with grace 0.

It polls the API (pods every 0.5 s) rather than watching: simple, and the
latency is bounded and known. SIGSTOP of this process and its pods (``lab
node stop``) makes the node silent, exactly like a hung kubelet.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from harness.lab.paths import (
    KUBERNETES_VERSION,
    LabPaths,
    bin_dir,
    loopback_twin,
    pod_network,
    service_address,
)
from harness.seaweed import weed_binary

logger = logging.getLogger("flywheel_chaos.nodeagent")

API_TIMEOUT = (2.0, 5.0)
LEASE_RENEW_S = 2.0
STATUS_EVERY_S = 10.0
POD_POLL_S = 0.5
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(moment: dt.datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(moment: dt.datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _program(name: str) -> str | None:
    if name == "weed" or name.endswith("/weed"):
        return weed_binary()
    if name == "etcd" or name.endswith("/etcd"):
        built = bin_dir() / "etcd"
        return str(built) if built.exists() else None
    return None


def _under_tmp(paths: list[Path]) -> list[str]:
    """The first path component below /tmp of each path that lives there, once each."""
    tops: list[str] = []
    for path in paths:
        if Path("/tmp") in path.parents:
            top = path.relative_to("/tmp").parts[0]
            if top not in tops:
                tops.append(top)
    return tops


def _service_links(services: list[Any]) -> dict[str, str]:
    """The kubelet's service environment variables (``enableServiceLinks``).

    ``{NAME}_SERVICE_HOST`` is the address clients reach the Service at: in
    the lab, the service proxy's stable loopback twin of the ClusterIP.
    """
    values: dict[str, str] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or not svc.spec.ports:
            continue
        prefix = svc.metadata.name.upper().replace("-", "_")
        values[f"{prefix}_SERVICE_HOST"] = service_address(ip)
        values[f"{prefix}_SERVICE_PORT"] = str(svc.spec.ports[0].port)
        for port in svc.spec.ports:
            if port.name:
                values[f"{prefix}_SERVICE_PORT_{port.name.upper().replace('-', '_')}"] = str(
                    port.port
                )
    return values


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if not unshare or os.geteuid() != 0:
        return False
    try:
        return (
            subprocess.run(
                [unshare, "--mount", "--propagation", "private", "true"],
                capture_output=True,
                timeout=5,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Container:
    """One container of a pod: a local process or a simulated one."""

    name: str
    image: str
    argv: list[str] | None  # None: simulated
    env: dict[str, str]
    log_path: Path
    pid_path: Path
    restart_policy: str
    process: subprocess.Popen[bytes] | None = None
    started_at: dt.datetime | None = None
    restart_count: int = 0
    last_exit: dict[str, Any] | None = None
    next_start: float = 0.0
    backoff_s: float = 0.0
    ready: bool = False
    probe_successes: int = 0
    probe_failures: int = 0
    waiting_reason: str = "ContainerCreating"

    def running(self) -> bool:
        if self.argv is None:
            return self.started_at is not None
        return self.process is not None and self.process.poll() is None


@dataclass
class PodRunner:
    """Everything the agent does for one pod."""

    uid: str
    namespace: str
    name: str
    pod_ip: str  # what the API shows (10.244.N.X)
    directory: Path
    containers: list[Container] = field(default_factory=list)
    readiness: dict[str, Any] | None = None
    readiness_container: str = ""
    stopping: bool = False
    stopped: threading.Event = field(default_factory=threading.Event)
    started_at: dt.datetime = field(default_factory=_now)
    last_status: dict[str, Any] | None = None
    last_probe: float = 0.0
    prepared: bool = False

    @property
    def bind_ip(self) -> str:
        """Where the pod's processes listen: the loopback twin of its IP."""
        return loopback_twin(self.pod_ip)


class NodeAgent:
    """Plays the kubelet for one lab node."""

    def __init__(
        self, node: str, lab: LabPaths, node_manifest: dict[str, Any], kubeconfig: Path
    ) -> None:
        self.node = node
        self.lab = lab
        self.manifest = node_manifest
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.base = lab.node_dir(node)
        self.base.mkdir(parents=True, exist_ok=True)
        self.pods: dict[str, PodRunner] = {}
        self.stop_event = threading.Event()
        self.isolate = _unshare_works()
        if not self.isolate:
            logger.warning("containers share the host's /tmp: unshare --mount is not available")
        self.lab_root = lab.root.resolve()
        self.ip_prefix = pod_network(node)

    # ----------------------------------------------------------- node ---

    def register(self) -> None:
        labels = dict(self.manifest.get("metadata", {}).get("labels") or {})
        labels.update(
            {
                "kubernetes.io/hostname": self.node,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }
        )
        annotations = dict(self.manifest.get("metadata", {}).get("annotations") or {})
        try:
            self.core.read_node(self.node, _request_timeout=API_TIMEOUT)
            self.core.patch_node(
                self.node,
                {"metadata": {"labels": labels, "annotations": annotations}},
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.node, "labels": labels, "annotations": annotations},
                "spec": dict(self.manifest.get("spec") or {}),
            }
            self.core.create_node(body, _request_timeout=API_TIMEOUT)
        self.report_status()
        self.renew_lease()

    def report_status(self) -> None:
        now = _ts()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "flywheel lab node agent is posting ready status",
            "lastHeartbeatTime": now,
        }
        conditions = [ready]
        for kind, reason in (
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ):
            conditions.append(
                {
                    "type": kind,
                    "status": "False",
                    "reason": reason,
                    "message": "",
                    "lastHeartbeatTime": now,
                }
            )
        current = self.core.read_node_status(self.node, _request_timeout=API_TIMEOUT)
        for condition in conditions:
            previous = next(
                (c for c in (current.status.conditions or []) if c.type == condition["type"]), None
            )
            if (
                previous is not None
                and previous.status == condition["status"]
                and previous.last_transition_time
            ):
                condition["lastTransitionTime"] = _ts(previous.last_transition_time)
            else:
                condition["lastTransitionTime"] = now
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
        status = {
            "conditions": conditions,
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": f"{self.ip_prefix}.1"},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.node).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.node)),
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.node}-{os.getpid()}")),
                "kernelVersion": platform.release(),
                "osImage": "flywheel-chaos lab node",
                "containerRuntimeVersion": "flywheel-lab://0.1",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": KUBERNETES_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.core.patch_node_status(self.node, {"status": status}, _request_timeout=API_TIMEOUT)

    def renew_lease(self) -> None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": 40,
                "renewTime": _micro(),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node, "kube-node-lease", {"spec": body["spec"]}, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = self.core.read_node(self.node, _request_timeout=API_TIMEOUT)
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node.metadata.uid}
            ]
            self.coordination.create_namespaced_lease(
                "kube-node-lease", body, _request_timeout=API_TIMEOUT
            )

    def heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stop_event.wait(LEASE_RENEW_S):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY_S:
                    self.report_status()
                    last_status = time.monotonic()
            except Exception as exc:  # keep beating
                logger.warning("heartbeat failed: %s", exc)

    # ----------------------------------------------------------- pods ---

    def pod_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.sync_pods()
            except Exception as exc:
                logger.warning(
                    "pod sync failed: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG)
                )
            self.stop_event.wait(POD_POLL_S)

    def sync_pods(self) -> None:
        pods = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}", _request_timeout=API_TIMEOUT
        ).items
        seen: set[str] = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            runner = self.pods.get(uid)
            if pod.metadata.deletion_timestamp is not None:
                if runner is None:
                    self._finish_deletion(pod)
                elif not runner.stopping:
                    grace = pod.metadata.deletion_grace_period_seconds
                    self._begin_stop(
                        runner, float(30 if grace is None else grace), delete_after=True
                    )
                continue
            if pod.status.phase in ("Succeeded", "Failed"):
                continue
            if runner is None:
                runner = self._admit(pod)
                if runner is None:
                    continue
            if runner.stopping:
                continue
            self._drive(runner, pod)
        for uid in list(self.pods):
            runner = self.pods[uid]
            if uid not in seen and not runner.stopping:
                # force-deleted: the object is gone, stop what is left
                self._begin_stop(runner, 0.0, delete_after=False)
            if runner.stopped.is_set():
                self.pods.pop(uid, None)

    def _used_ips(self) -> set[str]:
        return {r.pod_ip for r in self.pods.values()}

    def _allocate_ip(self) -> str:
        used = self._used_ips()
        for last in range(2, 255):
            candidate = f"{self.ip_prefix}.{last}"
            if candidate not in used:
                return candidate
        raise RuntimeError(f"node {self.node} has no free pod address")

    def _admit(self, pod: Any) -> PodRunner | None:
        pod_ip = pod.status.pod_ip if pod.status and pod.status.pod_ip else ""
        if not pod_ip or pod_ip in self._used_ips() or not pod_ip.startswith(self.ip_prefix + "."):
            pod_ip = self._allocate_ip()
        # short: unix socket paths under it must stay below 108 bytes
        directory = self.base / "pods" / pod.metadata.uid[:13]
        runner = PodRunner(
            uid=pod.metadata.uid,
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            pod_ip=pod_ip,
            directory=directory,
        )
        self.pods[runner.uid] = runner
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "pod").write_text(f"{runner.namespace}/{runner.name} {runner.uid}\n")
        logger.info(
            "admitted pod %s/%s at %s (listening on %s)",
            runner.namespace,
            runner.name,
            pod_ip,
            runner.bind_ip,
        )
        return runner

    def _volumes(self, pod: Any, runner: PodRunner) -> dict[str, Path] | None:
        """Host directory of each volume; None while one is not available yet."""
        paths: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            target = runner.directory / "volumes" / volume.name
            if volume.persistent_volume_claim is not None:
                claim = self.core.read_namespaced_persistent_volume_claim(
                    volume.persistent_volume_claim.claim_name,
                    runner.namespace,
                    _request_timeout=API_TIMEOUT,
                )
                if not claim.spec.volume_name or (claim.status and claim.status.phase != "Bound"):
                    return None
                target = self.base / "volumes" / claim.spec.volume_name
            elif volume.secret is not None:
                secret = self.core.read_namespaced_secret(
                    volume.secret.secret_name, runner.namespace, _request_timeout=API_TIMEOUT
                )
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o700)
                for key, value in (secret.data or {}).items():
                    path = target / key
                    path.write_bytes(base64.b64decode(value))
                    path.chmod(0o600)
            elif volume.config_map is not None:
                cm = self.core.read_namespaced_config_map(
                    volume.config_map.name, runner.namespace, _request_timeout=API_TIMEOUT
                )
                target.mkdir(parents=True, exist_ok=True)
                for key, value in (cm.data or {}).items():
                    (target / key).write_text(value)
            target.mkdir(parents=True, exist_ok=True)
            paths[volume.name] = target
        return paths

    def _env(self, pod: Any, runner: PodRunner, spec: Any, links: dict[str, str]) -> dict[str, str]:
        values: dict[str, str] = dict(links)
        for item in spec.env or []:
            if item.value_from is None:
                values[item.name] = _VAR.sub(
                    lambda m: values.get(m.group(1), m.group(0)), item.value or ""
                )
                continue
            source = item.value_from
            if source.field_ref is not None:
                path = source.field_ref.field_path
                values[item.name] = {
                    # the downward API gives the address the process can bind
                    "status.podIP": runner.bind_ip,
                    "status.hostIP": f"{self.ip_prefix}.1",
                    "metadata.name": runner.name,
                    "metadata.namespace": runner.namespace,
                    "metadata.uid": runner.uid,
                    "spec.nodeName": self.node,
                    "spec.serviceAccountName": pod.spec.service_account_name or "default",
                }.get(path, "")
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                secret = self.core.read_namespaced_secret(
                    ref.name, runner.namespace, _request_timeout=API_TIMEOUT
                )
                values[item.name] = base64.b64decode((secret.data or {}).get(ref.key, "")).decode()
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                cm = self.core.read_namespaced_config_map(
                    ref.name, runner.namespace, _request_timeout=API_TIMEOUT
                )
                values[item.name] = (cm.data or {}).get(ref.key, "")
        return values

    def _prepare(self, pod: Any, runner: PodRunner) -> bool:
        volumes = self._volumes(pod, runner)
        if volumes is None:
            return False
        (runner.directory / "tmp").mkdir(parents=True, exist_ok=True)
        restart_policy = pod.spec.restart_policy or "Always"
        links: dict[str, str] = {}
        if pod.spec.enable_service_links is not False:  # one read per pod, not per container
            links = _service_links(
                self.core.list_namespaced_service(
                    runner.namespace, _request_timeout=API_TIMEOUT
                ).items
            )
        for spec in pod.spec.containers:
            env = self._env(pod, runner, spec, links)
            mounts = sorted(
                (
                    (mount.mount_path.rstrip("/"), volumes[mount.name])
                    for mount in spec.volume_mounts or []
                    if mount.name in volumes
                ),
                key=lambda item: -len(item[0]),
            )

            def rewrite(
                text: str, mounts: list[tuple[str, Path]] = mounts, env: dict[str, str] = env
            ) -> str:
                text = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
                for mount_path, host in mounts:
                    text = re.sub(
                        rf"(^|[=:,]){re.escape(mount_path)}(?=/|$|[,:])", rf"\g<1>{host}", text
                    )
                return text

            command = list(spec.command or [])
            program = _program(command[0]) if command else None
            argv = None
            if program is not None:
                argv = [
                    program,
                    *(rewrite(a) for a in command[1:]),
                    *(rewrite(a) for a in spec.args or []),
                ]
            runner.containers.append(
                Container(
                    name=spec.name,
                    image=spec.image,
                    argv=argv,
                    env={k: rewrite(v) for k, v in env.items()},
                    log_path=runner.directory / f"{spec.name}.log",
                    pid_path=runner.directory / f"{spec.name}.pid",
                    restart_policy=restart_policy,
                )
            )
            if spec.readiness_probe is not None and runner.readiness is None:
                runner.readiness = client.ApiClient().sanitize_for_serialization(
                    spec.readiness_probe
                )
                runner.readiness_container = spec.name
        runner.prepared = True
        return True

    def _start(self, runner: PodRunner, container: Container) -> None:
        if container.argv is None:
            container.started_at = _now()
            container.waiting_reason = ""
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(runner.directory),
            "TMPDIR": "/tmp" if self.isolate else str(runner.directory / "tmp"),
            "HOSTNAME": runner.name,
            **container.env,
        }
        argv = list(container.argv)
        tmp = runner.directory / "tmp"
        if self.isolate:
            # a container starts with a fresh filesystem: its /tmp too
            if any(os.path.ismount(p) for p in tmp.rglob("*") if p.is_dir()):
                raise OSError(f"refusing to clear {tmp}: something is mounted under it")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True, exist_ok=True)
            script = 'mount --rbind "$0" /tmp && exec "$@"'
            # a lab or a program living under /tmp (a clone in /tmp, its venv)
            # is bound back into the private /tmp at its own path
            for top in _under_tmp([self.lab_root, Path(argv[0]).resolve()]):
                (tmp / top).mkdir(parents=True, exist_ok=True)
                script = f'mount --bind "/tmp/{top}" "$0/{top}" && ' + script
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
                str(tmp),
                *argv,
            ]
        with container.log_path.open("ab") as log:
            log.write(f"--- start {_ts()} restart {container.restart_count}\n".encode())
            log.flush()
            container.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=runner.directory,
                env=env,
                start_new_session=True,
            )
        container.pid_path.write_text(str(container.process.pid))
        container.started_at = _now()
        container.waiting_reason = ""
        container.ready = False
        container.probe_successes = container.probe_failures = 0
        logger.info(
            "started %s/%s container %s (pid %d)",
            runner.namespace,
            runner.name,
            container.name,
            container.process.pid,
        )

    def _drive(self, runner: PodRunner, pod: Any) -> None:
        if not runner.prepared and not self._prepare(pod, runner):
            self._publish(runner, pod)
            return
        now = time.monotonic()
        for container in runner.containers:
            if container.running():
                if (
                    container.argv is not None
                    and container.started_at
                    and (_now() - container.started_at).total_seconds() > 60
                ):
                    container.backoff_s = 0.0
                continue
            if container.process is not None:  # it exited
                code = container.process.returncode
                container.last_exit = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": _ts(container.started_at),
                    "finishedAt": _ts(),
                }
                container.process = None
                container.ready = False
                with contextlib.suppress(OSError):
                    container.pid_path.unlink()
                policy = container.restart_policy
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    container.waiting_reason = "Terminated"
                    continue
                container.restart_count += 1
                container.backoff_s = min(10.0, max(1.0, container.backoff_s * 2))
                container.next_start = now + container.backoff_s
                container.waiting_reason = "CrashLoopBackOff"
                logger.info(
                    "container %s of %s exited %s; restart in %.0fs",
                    container.name,
                    runner.name,
                    code,
                    container.backoff_s,
                )
                continue
            if container.waiting_reason == "Terminated":
                continue
            if now >= container.next_start:
                try:
                    self._start(runner, container)
                except OSError as exc:
                    container.waiting_reason = "RunContainerError"
                    logger.error("cannot start %s: %s", container.name, exc)
        self._probe(runner)
        self._publish(runner, pod)

    def _probe(self, runner: PodRunner) -> None:
        probe = runner.readiness
        for container in runner.containers:
            if probe is None or container.name != runner.readiness_container:
                container.ready = container.running()
        if probe is None:
            return
        container = next(c for c in runner.containers if c.name == runner.readiness_container)
        if not container.running():
            container.ready = False
            return
        period = float(probe.get("periodSeconds", 10))
        delay = float(probe.get("initialDelaySeconds", 0))
        if container.started_at and (_now() - container.started_at).total_seconds() < delay:
            return
        if time.monotonic() - runner.last_probe < period:
            return
        runner.last_probe = time.monotonic()
        ok = self._run_probe(probe, runner.bind_ip, float(probe.get("timeoutSeconds", 1)))
        if ok:
            container.probe_successes += 1
            container.probe_failures = 0
            if container.probe_successes >= int(probe.get("successThreshold", 1)):
                container.ready = True
        else:
            container.probe_failures += 1
            container.probe_successes = 0
            if container.probe_failures >= int(probe.get("failureThreshold", 3)):
                container.ready = False

    @staticmethod
    def _run_probe(probe: dict[str, Any], ip: str, timeout_s: float) -> bool:
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                connection = http.client.HTTPConnection(ip, int(get["port"]), timeout=timeout_s)
                try:
                    connection.request("GET", get.get("path", "/"))
                    return 200 <= connection.getresponse().status < 400
                finally:
                    connection.close()
            if "tcpSocket" in probe:
                with socket.create_connection(
                    (ip, int(probe["tcpSocket"]["port"])), timeout=timeout_s
                ):
                    return True
        except (OSError, ValueError, http.client.HTTPException):
            return False
        return True

    def _container_status(self, container: Container) -> dict[str, Any]:
        state: dict[str, Any]
        if container.running():
            state = {"running": {"startedAt": _ts(container.started_at)}}
        elif container.waiting_reason == "Terminated" and container.last_exit:
            state = {"terminated": container.last_exit}
        else:
            state = {"waiting": {"reason": container.waiting_reason or "ContainerCreating"}}
        status: dict[str, Any] = {
            "name": container.name,
            "image": container.image,
            "imageID": container.image,
            "containerID": f"flywheel://{container.process.pid if container.process else 0}",
            "ready": container.ready,
            "started": container.running(),
            "restartCount": container.restart_count,
            "state": state,
            "lastState": {"terminated": container.last_exit} if container.last_exit else {},
        }
        return status

    def _publish(self, runner: PodRunner, pod: Any) -> None:
        statuses = [self._container_status(c) for c in runner.containers]
        all_ready = bool(runner.containers) and all(c.ready for c in runner.containers)
        any_running = any(c.running() for c in runner.containers)
        if runner.containers and all(c.waiting_reason == "Terminated" for c in runner.containers):
            phase = (
                "Succeeded"
                if all((c.last_exit or {}).get("exitCode") == 0 for c in runner.containers)
                else "Failed"
            )
        else:
            phase = (
                "Running"
                if any_running or any(c.restart_count for c in runner.containers)
                else "Pending"
            )
        conditions = []
        for previous in pod.status.conditions or []:
            if previous.type == "PodScheduled":
                conditions.append(
                    {
                        "type": "PodScheduled",
                        "status": previous.status,
                        "lastTransitionTime": _ts(previous.last_transition_time)
                        if previous.last_transition_time
                        else _ts(),
                    }
                )
        desired = {
            "Initialized": "True" if runner.prepared else "False",
            "ContainersReady": "True" if all_ready else "False",
            "Ready": "True" if all_ready else "False",
        }
        key = {
            "phase": phase,
            "conditions": desired,
            "statuses": [
                (s["name"], s["ready"], s["restartCount"], next(iter(s["state"])), s["containerID"])
                for s in statuses
            ],
            "ip": runner.pod_ip,
        }
        old = {c.type: c for c in pod.status.conditions or []}
        # what the API holds now: the node lifecycle controller marks pods of a
        # NotReady node not ready, so compare with the object, not our last write
        observed = {
            "phase": pod.status.phase,
            "conditions": {kind: old[kind].status if kind in old else None for kind in desired},
            "statuses": [
                (
                    cs.name,
                    cs.ready,
                    cs.restart_count,
                    "running"
                    if cs.state and cs.state.running
                    else "terminated"
                    if cs.state and cs.state.terminated
                    else "waiting",
                    cs.container_id,
                )
                for cs in pod.status.container_statuses or []
            ],
            "ip": pod.status.pod_ip,
        }
        if runner.last_status == key and observed == key:
            return
        for kind, value in desired.items():
            previous = old.get(kind)
            moment = (
                _ts(previous.last_transition_time)
                if previous and previous.status == value and previous.last_transition_time
                else _ts()
            )
            conditions.append({"type": kind, "status": value, "lastTransitionTime": moment})
        body = {
            "status": {
                "phase": phase,
                "hostIP": f"{self.ip_prefix}.1",
                "hostIPs": [{"ip": f"{self.ip_prefix}.1"}],
                "podIP": runner.pod_ip,
                "podIPs": [{"ip": runner.pod_ip}],
                "startTime": _ts(runner.started_at),
                "conditions": conditions,
                "containerStatuses": statuses,
            }
        }
        try:
            self.core.patch_namespaced_pod_status(
                runner.name, runner.namespace, body, _request_timeout=API_TIMEOUT
            )
            runner.last_status = key
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _begin_stop(self, runner: PodRunner, grace_s: float, delete_after: bool) -> None:
        runner.stopping = True
        threading.Thread(
            target=self._stop_runner,
            args=(runner, grace_s, delete_after),
            name=f"stop-{runner.name}",
            daemon=True,
        ).start()

    def _stop_runner(self, runner: PodRunner, grace_s: float, delete_after: bool) -> None:
        try:
            self.stop_containers(runner, grace_s)
            if delete_after:
                self._delete_pod(runner.namespace, runner.name, runner.uid)
                # the container filesystem goes with the pod; its log stays
                shutil.rmtree(runner.directory / "tmp", ignore_errors=True)
                shutil.rmtree(runner.directory / "volumes", ignore_errors=True)
        except Exception as exc:
            logger.warning("stopping %s failed: %s", runner.name, exc)
            runner.stopping = False
            return
        runner.stopped.set()

    def stop_containers(self, runner: PodRunner, grace_s: float) -> None:
        live = [c for c in runner.containers if c.process is not None and c.process.poll() is None]
        for container in live:
            assert container.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(container.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for container in live:
            assert container.process is not None
            try:
                container.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(container.process.pid, signal.SIGKILL)
                container.process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.process.pid, signal.SIGKILL)
        for container in runner.containers:
            with contextlib.suppress(OSError):
                container.pid_path.unlink()
        logger.info("stopped pod %s/%s", runner.namespace, runner.name)

    def _delete_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _finish_deletion(self, pod: Any) -> None:
        self._delete_pod(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)

    # ---------------------------------------------------------- main ---

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.register()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.node} could not register: {exc}") from exc
                time.sleep(0.5)
        (self.base / "agent.ready").write_text(str(os.getpid()))
        threads = [
            threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self.pod_loop, name="pods", daemon=True),
        ]
        for thread in threads:
            thread.start()
        while not self.stop_event.wait(1.0):
            pass
        for thread in threads:
            thread.join(timeout=5)
        # all pods at once, as a kubelet shutting down does: one grace period, not one per pod
        stoppers = [
            threading.Thread(target=self.stop_containers, args=(runner, 3.0), daemon=True)
            for runner in list(self.pods.values())
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=3.0 + 12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel-lab-node-agent")
    parser.add_argument("--node", required=True)
    parser.add_argument("--lab-dir", required=True)
    parser.add_argument("--nodes-file", required=True, help="topology file with the Node manifests")
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    manifest = next(
        (
            doc
            for doc in yaml.safe_load_all(Path(args.nodes_file).read_text())
            if doc and doc.get("kind") == "Node" and doc["metadata"]["name"] == args.node
        ),
        {"metadata": {"name": args.node}},
    )
    agent = NodeAgent(args.node, LabPaths(Path(args.lab_dir)), manifest, Path(args.kubeconfig))

    def on_term(signum: int, frame: object) -> None:
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    agent.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
