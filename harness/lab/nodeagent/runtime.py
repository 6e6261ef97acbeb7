"""The pod runtime: containers as local processes bound to the pod IP's loopback twin.

A container whose command is a program the lab knows (``weed``, the lab's own
``etcd`` and ``rustfs`` builds, and this project's own image: ``flywheel-chaos`` and
``chaos`` are the entry points installed beside the lab's Python) runs as a real process in
its own process group, as root in a private mount namespace with its own ``/tmp`` and, when
it mounts something there (the service account volume), its own ``/run``; other containers
are simulated as Running. Stopping is a kubelet's: SIGTERM, the grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.lab.nodeagent.kube import now, ts
from harness.lab.nodeagent.projected import ProjectedToken
from harness.lab.paths import bin_dir, loopback_twin
from harness.lab.rustfs import RustFSNotFound, rustfs_binary
from harness.lab.seaweed import weed_binary

logger = logging.getLogger("flywheel_chaos.nodeagent")


PROJECT_IMAGE = re.compile(r"(^|/)flywheel-chaos([:@]|$)")
PROJECT_PROGRAMS = ("flywheel-chaos", "chaos")


def is_project_image(image: str | None) -> bool:
    """This project's image (``.../flywheel-chaos:TAG`` or ``@sha256:...``)."""
    return bool(image) and PROJECT_IMAGE.search(image or "") is not None


def program_for(name: str, image: str = "") -> str | None:
    if is_project_image(image):
        program = Path(name).name
        installed = Path(sys.executable).parent / program
        return str(installed) if program in PROJECT_PROGRAMS else None
    if name == "weed" or name.endswith("/weed"):
        return weed_binary()
    if name == "rustfs" or name.endswith("/rustfs"):
        try:
            return rustfs_binary()
        except RustFSNotFound:
            # a known program that is not built: the container fails to start
            # (RunContainerError), it is never simulated as running
            return str(bin_dir() / "rustfs")
    if name == "etcd" or name.endswith("/etcd"):
        built = bin_dir() / "etcd"
        return str(built) if built.exists() else None
    return None


def under_tmp(path: str) -> bool:
    return path.startswith("/tmp/")


def under_run(path: str) -> bool:
    """A mount under ``/run`` (``/var/run`` is its link): the service account volume."""
    return path.startswith(("/run/", "/var/run/"))


def _in_run(path: str) -> str:
    return "/run/" + path.removeprefix("/var/run/") if path.startswith("/var/run/") else path


def _reachable(container: Container) -> bool:
    """Its working directory exists on the host or is one of its bound mounts."""
    wd = container.working_dir
    bound = [path for path, _ in container.tmp_mounts + container.run_mounts]
    return bool(wd) and (
        Path(wd).is_dir() or any(wd == path or wd.startswith(path + "/") for path in bound)
    )


def _under_tmp(paths: list[Path]) -> list[str]:
    """The first path component below /tmp of each path that lives there, once each."""
    tops: list[str] = []
    for path in paths:
        if Path("/tmp") in path.parents:
            top = path.relative_to("/tmp").parts[0]
            if top not in tops:
                tops.append(top)
    return tops


def unshare_works() -> bool:
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
    tmp_mounts: list[tuple[str, Path]] = field(default_factory=list)
    """Volumes mounted under /tmp: (mount path, host directory), bound in its private /tmp."""
    run_mounts: list[tuple[str, Path]] = field(default_factory=list)
    """Volumes mounted under /run (the service account's), bound in a private /run."""
    pid: int = 0
    """Its process's pid, kept after it exits (the container id a kubelet keeps reporting)."""
    working_dir: str = ""
    """Its ``workingDir`` (rewritten to a volume's host directory when it is a mount)."""

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
    started_at: dt.datetime = field(default_factory=now)
    last_status: dict[str, Any] | None = None
    last_probe: float = 0.0
    prepared: bool = False
    volume_paths: dict[str, Path] = field(default_factory=dict)
    """Each volume's host directory, once prepared."""
    waiting_reason: str = ""
    """Why the pod's containers cannot be made yet (CreateContainerConfigError)."""
    tokens: list[ProjectedToken] = field(default_factory=list)
    """The service account tokens of its projected volumes (renewed before they expire)."""

    @property
    def bind_ip(self) -> str:
        """Where the pod's processes listen: the loopback twin of its IP."""
        return loopback_twin(self.pod_ip)


def _isolated(
    argv: list[str], runner: PodRunner, container: Container, lab_root: Path
) -> list[str]:
    """``argv`` run in a private mount namespace: a fresh private /tmp, the container's
    volumes under /tmp and /var/run bound at their own paths, its working directory."""
    tmp = runner.directory / "tmp"
    # a container starts with a fresh filesystem: its /tmp too
    if any(os.path.ismount(p) for p in tmp.rglob("*") if p.is_dir()):
        raise OSError(f"refusing to clear {tmp}: something is mounted under it")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    # volumes mounted under /tmp are bound at their own path inside the pod's
    # private /tmp, so every pod sees its own data at the same path (what a
    # distributed server's endpoint list needs); nothing on the host changes
    binds = "".join(
        f'mkdir -p "{path}" && mount --bind "{host}" "{path}" && '
        for path, host in container.tmp_mounts
    )
    runs = "".join(
        f'mkdir -p "{_in_run(path)}" && mount --bind "{host}" "{_in_run(path)}" && '
        for path, host in container.run_mounts
    )
    if runs:
        runs = "mount -t tmpfs -o mode=0755,size=1m flywheel-run /run && " + runs
    chdir = f'cd "{container.working_dir}" && ' if _reachable(container) else ""
    script = f'mount --rbind "$0" /tmp && {binds}{runs}{chdir}exec "$@"'
    # a lab or a program living under /tmp (a clone in /tmp, its venv)
    # is bound back into the private /tmp at its own path
    for top in _under_tmp([lab_root, Path(argv[0]).resolve()]):
        (tmp / top).mkdir(parents=True, exist_ok=True)
        script = f'mount --bind "/tmp/{top}" "$0/{top}" && ' + script
    return [
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


def start_container(runner: PodRunner, container: Container, isolate: bool, lab_root: Path) -> None:
    """Start ``container`` as a local process in its own process group (a private /tmp with ``isolate``)."""
    if container.argv is None:
        container.started_at = now()
        container.waiting_reason = ""
        return
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(runner.directory),
        "TMPDIR": "/tmp" if isolate else str(runner.directory / "tmp"),
        "HOSTNAME": runner.name,
        **container.env,
    }
    argv = list(container.argv)
    if isolate:
        argv = _isolated(argv, runner, container, lab_root)
    cwd = runner.directory
    if not isolate and container.working_dir and Path(container.working_dir).is_dir():
        cwd = Path(container.working_dir)
    with container.log_path.open("ab") as log:
        log.write(f"--- start {ts()} restart {container.restart_count}\n".encode())
        log.flush()
        container.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    container.pid = container.process.pid
    container.pid_path.write_text(str(container.process.pid))
    container.started_at = now()
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


def stop_containers(runner: PodRunner, grace_s: float) -> None:
    """SIGTERM every live container's group, wait the grace period, then SIGKILL."""
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
