"""Chaos Toolkit controls of flywheel-chaos, declared in each experiment's ``controls:``.

* :mod:`harness.controls.safety`: one experiment at a time per cluster (a
  ``coordination.k8s.io`` Lease, kept by :mod:`harness.controls.lease`), rollbacks
  that always run, and a run that stops when it cannot do either;
* :mod:`harness.controls.survival`: the survival prober, live during the fault;
* :mod:`harness.controls.evidence`: one JSON evidence record per run.

Declare them in that order. They share one :class:`RunState` per process.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    """What the controls of one run tell each other."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: float = field(default_factory=time.time)
    fault: str = ""
    budget_ms: float | None = None
    lease: dict[str, Any] | None = None
    lease_refused: str | None = None
    lease_lost: str | None = None
    fault_started_at: float | None = None
    fault_ended_at: float | None = None
    fault_actions: list[dict[str, Any]] = field(default_factory=list)
    prober: Any = None
    prober_summary: dict[str, Any] | None = None
    tofu_loop: Any = None
    tofu_summary: dict[str, Any] | None = None
    """What OpenTofu's own plans saw during the run (``FLYWHEEL_TOFU_PLAN_STACK``)."""
    integrity_before: dict[str, Any] | None = None
    fingerprint: dict[str, Any] | None = None
    live_rca: dict[str, Any] | None = None
    """An RCA bundle taken while the fault was live (the evidence control's ``rca_after``)."""


_lock = threading.Lock()
_current: RunState | None = None


def current_run(reset: bool = False) -> RunState:
    """The run state of this process (a new one with ``reset``)."""
    global _current
    with _lock:
        if reset or _current is None:
            _current = RunState()
        return _current
