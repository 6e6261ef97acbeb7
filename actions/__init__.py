"""flywheel-chaos: Chaos Toolkit actions (and the extension's discovery entry point).

``chaos discover flywheel-chaos`` imports the distribution's first top-level
package, which is this one, and calls :func:`discover`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

__all__ = ["discover"]

ACTION_MODULES: tuple[str, ...] = ("actions.nodes", "actions.pods", "actions.buckets")
PROBE_MODULES: tuple[str, ...] = (
    "probes.state_authority",
    "probes.backup",
    "probes.tofu",
    "probes.buckets",
)


def _version() -> str:
    try:
        return version("flywheel-chaos")
    except PackageNotFoundError:
        return "0+unknown"


def discover(discover_system: bool = True) -> Any:
    """List every action and probe of flywheel-chaos for ``chaos discover``."""
    discovery = initialize_discovery_result("flywheel-chaos", _version(), "flywheel-chaos")
    for module in ACTION_MODULES:
        discovery["activities"].extend(discover_actions(module))
    for module in PROBE_MODULES:
        discovery["activities"].extend(discover_probes(module))
    return discovery
