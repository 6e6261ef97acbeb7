"""The node agents (our kubelet), one per node, each under its node's power supervisor.

The supervisor is the lab's hypervisor (freeze, power off, power on): it is the process the
lab starts and stops, and it runs the agent as its child.
"""

from __future__ import annotations

import sys

from harness.lab.components.base import Component, Site
from harness.lab.paths import NODES


def args(site: Site, node: str) -> list[str]:
    root, python = site.paths.root, sys.executable
    return [
        python,
        "-m",
        "harness.lab.power",
        f"--node={node}",
        f"--lab-dir={root}",
        f"--agent-log={site.paths.logs / f'node-agent-{node}.agent.log'}",
        "--",
        python,
        "-m",
        "harness.lab.nodeagent",
        f"--node={node}",
        f"--slot={site.ports.slot}",
        f"--lab-dir={root}",
        f"--nodes-file={site.topology_dir / 'nodes.yaml'}",
        f"--kubeconfig={site.paths.kubeconfig_for('node-agent')}",
    ]


def components(site: Site) -> list[Component]:
    return [
        Component(
            f"node-agent-{node}",
            args(site, node),
            (site.paths.node_dir(node) / "agent.ready").exists,
            stop_timeout_s=25.0,
        )
        for node in NODES
    ]
