"""flywheel-chaos: Chaos Toolkit probes of an S3 state authority and its cluster."""

from __future__ import annotations

from typing import Any

import flywheel_chaos  # noqa: F401  (first: it makes the Kubernetes client import lazily)

__all__ = ["discover"]


def discover(discover_system: bool = True) -> Any:
    """Same as :func:`actions.discover` (whichever package chaos imports first)."""
    from actions import discover as _discover

    return _discover(discover_system)
