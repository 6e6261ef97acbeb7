"""Game days: a suite of experiments run in order under one cluster lease.

The game day takes the experiment lease itself (conditional renewals, as a run's own:
:class:`~harness.controls.lease.LeaseKeeper`) and hands its identity to each ``chaos run``
(``FLYWHEEL_LEASE_IDENTITY``), so no other experiment can slip in between. Before its runs
it fetches the evidence store's records the directory lacks (a pod starts empty; the chain
continues); it runs each experiment as many times as the plan says (:mod:`.suite`), saying
which run of how many, the time elapsed and the verdicts so far, and every 30 s that a long
run is still going. After each run it checks for a safety breach (a fault left undone:
rollback intent still recorded; the safety control refused; the game day lost its lease)
and, when one is found, undoes it with ``recover`` and stops. All evidence is recorded by the
experiments (signed, pushed to the store); each run's Chaos Toolkit journal and log are
written to a private temporary directory and copied beside the evidence only after
redaction. It ends with the recorded guard (``guard: true``), the gate over everything
recorded, a summary, gate verdict and JUnit file in ``FLYWHEEL_EVIDENCE_DIR/gamedays/`` and
in the store, and one notification (:mod:`.notify`).
"""

from __future__ import annotations

from harness.gameday.run import run_experiment, run_gameday
from harness.gameday.suite import load_suite, plan, suite_path

__all__ = ["load_suite", "plan", "run_experiment", "run_gameday", "suite_path"]
