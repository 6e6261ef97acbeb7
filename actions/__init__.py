"""flywheel-chaos: Chaos Toolkit actions (and the extension's discovery entry point).

``chaos discover flywheel-chaos`` imports the distribution's first top-level
package, which is this one, and calls :func:`discover`.
"""

from __future__ import annotations

from typing import Any

from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

from flywheel_chaos import __version__

__all__ = ["discover"]

ACTION_MODULES: tuple[str, ...] = ("actions.nodes", "actions.pods")
PROBE_MODULES: tuple[str, ...] = ("probes.state_authority", "probes.backup", "probes.tofu")
"""The production activities. The lab-only bucket-index-loss fault is not among them: it
lives in ``harness.lab.faults`` and is never published."""


def discover(discover_system: bool = True) -> Any:
    """List every action and probe of flywheel-chaos for ``chaos discover``."""
    discovery = initialize_discovery_result("flywheel-chaos", __version__, "flywheel-chaos")
    for module in ACTION_MODULES:
        discovery["activities"].extend(discover_actions(module))
    for module in PROBE_MODULES:
        discovery["activities"].extend(discover_probes(module))
    return discovery
