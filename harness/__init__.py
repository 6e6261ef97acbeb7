"""flywheel-chaos's harness: the CLI, the controls, the record, the gate and the lab."""

from __future__ import annotations

import flywheel_chaos  # noqa: F401  (first: it makes the Kubernetes client import lazily)
