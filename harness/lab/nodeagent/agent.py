"""The node agent itself: admits, drives and deletes the pods bound to its node."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from flywheel_chaos.diskview import LABEL as DISK_VIEW_LABEL
from flywheel_chaos.diskview import LABEL_VALUE as DISK_VIEW
from flywheel_chaos.diskview import MOUNT_ROOT as DISK_VIEW_ROOT
from flywheel_chaos.diskview import list_volumes
from flywheel_chaos.nodefault import HELPER_DURATION, HELPER_LABEL
from harness.lab.nodeagent.containers import container_for
from harness.lab.nodeagent.heartbeat import NodeHeartbeat
from harness.lab.nodeagent.kube import API_TIMEOUT, now, ts
from harness.lab.nodeagent.links import (
    MissingReference,
    api_server_links,
    container_env,
    service_links,
    service_names,
)
from harness.lab.nodeagent.podstatus import publish
from harness.lab.nodeagent.projected import refresh_due, renew
from harness.lab.nodeagent.readiness import update_readiness
from harness.lab.nodeagent.runtime import (
    PodRunner,
    start_container,
    stop_containers,
    unshare_works,
)
from harness.lab.nodeagent.volumes import materialise
from harness.lab.paths import LabPaths, pod_network

logger = logging.getLogger("flywheel_chaos.nodeagent")

POD_POLL_S = 0.5


class NodeAgent:
    """Plays the kubelet for one lab node."""

    def __init__(
        self,
        node: str,
        lab: LabPaths,
        node_manifest: dict[str, Any],
        kubeconfig: Path,
        slot: int = 0,
    ) -> None:
        self.node = node
        self.lab = lab
        self.manifest = node_manifest
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.base = lab.node_dir(node)
        self.base.mkdir(parents=True, exist_ok=True)
        self.pods: dict[str, PodRunner] = {}
        self.stop_event = threading.Event()
        self.isolate = unshare_works()
        if not self.isolate:
            logger.warning("containers share the host's /tmp: unshare --mount is not available")
        self.lab_root = lab.root.resolve()
        self.ip_prefix = pod_network(node, slot)
        self.host_ip = f"{self.ip_prefix}.1"
        self.heartbeat = NodeHeartbeat(
            node, node_manifest, self.core, client.CoordinationV1Api(api), self.host_ip
        )
        self.kubelet_stops: dict[str, float] = {}
        """kubelet-stop helper pods seen (uid -> seconds the kubelet stays down)."""

    def pod_loop(self) -> None:
        while not self.stop_event.is_set():
            if self.heartbeat.paused:
                # a stopped kubelet: pods keep running, nothing is started, restarted,
                # deleted or reported
                self.stop_event.wait(POD_POLL_S)
                continue
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
            if (pod.metadata.labels or {}).get(DISK_VIEW_LABEL) == DISK_VIEW and runner.prepared:
                self._disk_view(runner, pod)
            if (pod.metadata.labels or {}).get(HELPER_LABEL) == "kubelet-stop":
                self._kubelet_stop(runner, pod)
                if self.heartbeat.paused:
                    return  # the kubelet is down from here on
        for uid in list(self.pods):
            runner = self.pods[uid]
            if uid not in seen and not runner.stopping:
                # force-deleted: the object is gone, stop what is left
                self._begin_stop(runner, 0.0, delete_after=False)
            if runner.stopped.is_set():
                self.pods.pop(uid, None)

    def _kubelet_stop(self, runner: PodRunner, pod: Any) -> None:
        """Do what the kubelet-stop helper does to a real node: stop this kubelet for a while.

        The helper pod runs ``systemctl stop kubelet`` with a host timer that
        starts it again after its duration: this agent stops its heartbeats,
        status updates, pod starts and deletions for that long while the pods'
        processes keep running, then reports the helper Succeeded.
        """
        if runner.uid not in self.kubelet_stops:
            seconds = float((pod.metadata.annotations or {}).get(HELPER_DURATION) or 60)
            self.kubelet_stops[runner.uid] = seconds
            logger.warning(
                "kubelet-stop helper %s: the kubelet stops for %.0f s", runner.name, seconds
            )
            self.heartbeat.pause(seconds)
            return
        if runner.containers and runner.containers[0].waiting_reason != "Terminated":
            self._complete(runner, pod)

    def _complete(self, runner: PodRunner, pod: Any) -> None:
        """A helper pod's simulated containers exit 0: the pod is Succeeded."""
        for container in runner.containers:
            container.waiting_reason = "Terminated"
            container.last_exit = {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": ts(container.started_at or now()),
                "finishedAt": ts(),
            }
            container.started_at = None  # a simulated container runs while this is set
        publish(self.core, runner, pod, self.host_ip)

    def _disk_view(self, runner: PodRunner, pod: Any) -> None:
        """Do what the RCA's read-only debug pod does on a real node: list its volumes.

        Its script (:data:`flywheel_chaos.diskview.SCRIPT`) lists every volume mounted
        under ``/flywheel-disk``; here the same listing is written from the
        volumes' node directories into its log, and it ends Succeeded.
        """
        container = runner.containers[0] if runner.containers else None
        if container is None or container.waiting_reason == "Terminated":
            return
        spec = pod.spec.containers[0]
        volumes = {
            mount.mount_path.rstrip("/").rsplit("/", 1)[1]: runner.volume_paths[mount.name]
            for mount in spec.volume_mounts or []
            if mount.mount_path.startswith(DISK_VIEW_ROOT + "/")
            and mount.name in runner.volume_paths
        }
        container.log_path.write_text(list_volumes(volumes))
        logger.info("disk-view helper %s: listed %s", runner.name, ", ".join(sorted(volumes)))
        self._complete(runner, pod)

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

    def _prepare(self, pod: Any, runner: PodRunner) -> bool:
        # the environment first (a missing Secret or ConfigMap: the pod waits, and no token is
        # requested for it yet), then the volumes, then the containers
        services = self.core.list_service_for_all_namespaces(_request_timeout=API_TIMEOUT).items
        links = api_server_links(services)
        if pod.spec.enable_service_links is not False:
            links.update(
                service_links([s for s in services if s.metadata.namespace == runner.namespace])
            )
        try:
            envs = {
                spec.name: container_env(
                    self.core, pod, runner, spec, links, self.node, self.host_ip
                )
                for spec in pod.spec.containers
            }
        except MissingReference as missing:
            if runner.waiting_reason != "CreateContainerConfigError":
                logger.warning("pod %s/%s waits: %s", runner.namespace, runner.name, missing)
            runner.waiting_reason = "CreateContainerConfigError"
            return False
        local = {uid for uid, other in self.pods.items() if not other.stopping}
        runner.tokens = []
        volumes = materialise(self.core, pod, runner, self.base, local)
        if volumes is None:
            return False
        runner.volume_paths = volumes
        (runner.directory / "tmp").mkdir(parents=True, exist_ok=True)
        names = service_names(services)
        for spec in pod.spec.containers:
            runner.containers.append(
                container_for(pod, runner, spec, envs[spec.name], names, self.isolate)
            )
            if spec.readiness_probe is not None and runner.readiness is None:
                runner.readiness = client.ApiClient().sanitize_for_serialization(
                    spec.readiness_probe
                )
                runner.readiness_container = spec.name
        runner.prepared = True
        runner.waiting_reason = ""
        return True

    def _drive(self, runner: PodRunner, pod: Any) -> None:
        if not runner.prepared and not self._prepare(pod, runner):
            publish(self.core, runner, pod, self.host_ip)
            return
        self._renew_tokens(runner)
        moment = time.monotonic()
        for container in runner.containers:
            if container.running():
                if (
                    container.argv is not None
                    and container.started_at
                    and (now() - container.started_at).total_seconds() > 60
                ):
                    container.backoff_s = 0.0
                continue
            if container.process is not None:  # it exited
                code = container.process.returncode
                container.last_exit = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": ts(container.started_at),
                    "finishedAt": ts(),
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
                container.next_start = moment + container.backoff_s
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
            if moment >= container.next_start:
                try:
                    start_container(runner, container, self.isolate, self.lab_root)
                except OSError as exc:
                    container.waiting_reason = "RunContainerError"
                    logger.error("cannot start %s: %s", container.name, exc)
        update_readiness(runner)
        publish(self.core, runner, pod, self.host_ip)

    def _renew_tokens(self, runner: PodRunner) -> None:
        """Renew each service account token of the pod that is due (:func:`refresh_due`)."""
        for token in runner.tokens:
            if token.issued is None or token.expires is None:
                continue
            if refresh_due(token.issued, token.expires, now()):
                try:
                    renew(self.core, token)
                except Exception as exc:  # retried on the next sync
                    logger.warning("renewing the token of %s failed: %s", runner.name, exc)

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
            stop_containers(runner, grace_s)
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
                self.heartbeat.register()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.node} could not register: {exc}") from exc
                time.sleep(0.5)
        (self.base / "agent.ready").write_text(str(os.getpid()))
        threads = [
            threading.Thread(
                target=self.heartbeat.loop, args=(self.stop_event,), name="heartbeat", daemon=True
            ),
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
            threading.Thread(target=stop_containers, args=(runner, 3.0), daemon=True)
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
    parser.add_argument("--slot", type=int, default=0, help="the lab's slot (its pod network)")
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
    agent = NodeAgent(
        args.node, LabPaths(Path(args.lab_dir)), manifest, Path(args.kubeconfig), args.slot
    )

    def on_term(signum: int, frame: object) -> None:
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    agent.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
