"""flywheel-chaos's shared library: what the extension's activities and the harness both use.

Rooms, each a concern a newcomer can name:

* :mod:`flywheel_chaos.settings`: every ``FLYWHEEL_*`` / ``TOFU_*`` variable, documented once;
* :mod:`flywheel_chaos.errors`: exit codes and the errors that carry them;
* :mod:`flywheel_chaos.kube`: the Kubernetes client, the safety rules (allowlists, min ready
  nodes, the lease check), rollback intents, nodes, pods and drains;
* :mod:`flywheel_chaos.s3`: the state authority, its S3 client, error classes and checks;
* :mod:`flywheel_chaos.nodefault`, :mod:`flywheel_chaos.power`, :mod:`flywheel_chaos.undo`:
  how a node is lost (and the lab's power contract), and how every fault is undone;
* :mod:`flywheel_chaos.tofu`, :mod:`flywheel_chaos.diskview`: OpenTofu runs; the RCA's disk view.

It imports none of ``actions``, ``probes`` or ``harness`` (an import-linter contract).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flywheel_chaos.kube import lazy

__all__ = ["__version__"]

lazy.install()  # before anything imports kubernetes: see flywheel_chaos.kube.lazy

try:
    __version__ = version("flywheel-chaos")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
