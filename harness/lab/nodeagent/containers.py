"""One container of a pod as the lab's node agent runs it: its program, arguments,
environment and mounts (what a container runtime and its image would give it)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from harness.lab.nodeagent.links import VAR, resolve_service_names
from harness.lab.nodeagent.runtime import (
    Container,
    PodRunner,
    is_project_image,
    program_for,
    under_run,
    under_tmp,
)
from harness.lab.paths import bin_dir
from harness.lab.rustfs import SAFE_ENV as RUSTFS_SAFE_ENV


def container_for(
    pod: Any,
    runner: PodRunner,
    spec: Any,
    env: dict[str, str],
    names: dict[str, str],
    isolate: bool,
) -> Container:
    """One container of ``pod``: its program, arguments, environment and mounts."""
    every = [
        (mount.mount_path.rstrip("/"), runner.volume_paths[mount.name])
        for mount in spec.volume_mounts or []
        if mount.name in runner.volume_paths
    ]
    # isolated, under /tmp or /var/run: bound at the same path in the container's private
    # mount namespace; everywhere else: the path is rewritten in args and env
    tmp_mounts = [(path, host) for path, host in every if isolate and under_tmp(path)]
    run_mounts = [(path, host) for path, host in every if isolate and under_run(path)]
    # isolated, a volume at /tmp itself is the container's private /tmp already
    mounts = {
        path: host
        for path, host in every
        if (path, host) not in tmp_mounts + run_mounts and not (isolate and path == "/tmp")
    }
    # one pass, longest path first: a host directory put in is never rewritten again
    pattern = (
        re.compile(
            r"(^|[=:,])("
            + "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
            + r")(?=/|$|[,:])"
        )
        if mounts
        else None
    )

    def rewrite(text: str) -> str:
        text = VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
        if pattern is not None:
            text = pattern.sub(lambda m: m.group(1) + str(mounts[m.group(2)]), text)
        return resolve_service_names(text, names)

    command = list(spec.command or [])
    if not command and is_project_image(spec.image):
        command = ["flywheel-chaos"]  # the image's entry point
    program = program_for(command[0], spec.image) if command else None
    if program is not None and Path(program).name == "rustfs":
        # the lab's "image" defaults for RustFS: nothing leaves loopback
        env = {**RUSTFS_SAFE_ENV, **env}
    if is_project_image(spec.image):
        # the image's OpenTofu: the lab's own build
        env = {"PATH": f"{bin_dir()}:{os.environ.get('PATH', '/usr/bin:/bin')}", **env}
    argv = None
    if program is not None:
        argv = [
            program,
            *(rewrite(a) for a in command[1:]),
            *(rewrite(a) for a in spec.args or []),
        ]
    return Container(
        name=spec.name,
        image=spec.image,
        argv=argv,
        env={k: rewrite(v) for k, v in env.items()},
        log_path=runner.directory / f"{spec.name}.log",
        pid_path=runner.directory / f"{spec.name}.pid",
        restart_policy=pod.spec.restart_policy or "Always",
        tmp_mounts=tmp_mounts,
        run_mounts=run_mounts,
        working_dir=rewrite(spec.working_dir) if spec.working_dir else "",
    )
