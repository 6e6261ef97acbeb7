"""Readiness from a container's readinessProbe (httpGet, tcpSocket), as a kubelet runs it."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any

from harness.lab.nodeagent.kube import now
from harness.lab.nodeagent.runtime import PodRunner


def update_readiness(runner: PodRunner) -> None:
    """Run the pod's readiness probe when its period is due and set each container's ``ready``."""
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
    if container.started_at and (now() - container.started_at).total_seconds() < delay:
        return
    if time.monotonic() - runner.last_probe < period:
        return
    runner.last_probe = time.monotonic()
    ok = run_probe(probe, runner.bind_ip, float(probe.get("timeoutSeconds", 1)))
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


def run_probe(probe: dict[str, Any], ip: str, timeout_s: float) -> bool:
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
            with socket.create_connection((ip, int(probe["tcpSocket"]["port"])), timeout=timeout_s):
                return True
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return True
