"""OpenTofu in the loop: what a real ``tofu plan`` of a protected stack saw while the fault ran.

With ``FLYWHEEL_TOFU_PLAN_STACK`` naming an initialized stack directory whose S3 backend *is*
the protected state key (the lab makes one, seeded by ``tofu apply`` of ``terraform_data``
resources, so a plan of it is a no-op), the survival control runs ``tofu plan -lock=false
-refresh=false -detailed-exitcode`` back to back from before the method until measurement
ends. It never writes. Each plan is recorded with its time, duration and outcome: ``no-op``,
``failed`` (with an error class from its output: OpenTofu with its own retries against this
server) or ``phantom`` (the plan wanted to create or change resources: the state it read was
empty or another version, what OpenTofu does silently on a 404 of the state key).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from chaoslib.exceptions import ActivityFailed

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.tofu import PLAN_ARGS, plan_outcome, run_step, tofu_binary, tofu_env

logger = logging.getLogger("flywheel_chaos.controls.tofu")

__all__ = ["PLAN_TIMEOUT_S", "TofuLoop", "stack_from_env", "summarize_plans"]

PLAN_TIMEOUT_S: Final = 30.0
"""The longest one plan may take (its process group is stopped then: ``failed``, timeout)."""


def stack_from_env() -> Path | None:
    """The stack the plan loop plans, when ``FLYWHEEL_TOFU_PLAN_STACK`` names one."""
    value = settings.FLYWHEEL_TOFU_PLAN_STACK.get()
    return Path(value) if value else None


@dataclass
class TofuLoop:
    """Plans ``stack`` back to back in a thread until stopped."""

    stack: Path
    authority: StateAuthority
    pause_s: float = 0.2
    plans: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _plan_once(self, tofu: str, env: dict[str, str]) -> None:
        started_wall, started = time.time(), time.monotonic()
        try:
            code, output, seconds = run_step(
                [tofu, *PLAN_ARGS, "-no-color"], self.stack, env, PLAN_TIMEOUT_S, "plan"
            )
            outcome = plan_outcome(code, output)
        except ActivityFailed as exc:  # the plan timed out: OpenTofu saw no answer
            seconds = round(time.monotonic() - started, 3)
            outcome = {"outcome": "failed", "class": "timeout", "last_line": str(exc)[-300:]}
        self.plans.append({"at": started_wall, "seconds": seconds, **outcome})
        if outcome["outcome"] == "phantom":
            logger.warning("tofu plan at %.3f wanted changes: %s", started_wall, outcome)

    def _loop(self) -> None:
        try:
            tofu = tofu_binary()
        except ActivityFailed as exc:
            logger.warning("no tofu plan loop: %s", exc)
            return
        env = tofu_env(self.authority, self.stack)
        while not self._stop.is_set():
            self._plan_once(tofu, env)
            self._stop.wait(self.pause_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tofu-plan-loop", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop after the plan in flight (bounded by its timeout); the summary."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PLAN_TIMEOUT_S + 10)
        return summarize_plans(self.plans, str(self.stack))


def summarize_plans(plans: list[dict[str, Any]], stack: str) -> dict[str, Any]:
    counts = {k: sum(1 for p in plans if p["outcome"] == k) for k in ("no-op", "failed", "phantom")}
    phantoms = [p for p in plans if p["outcome"] == "phantom"]
    return {
        "stack": stack,
        "plans": plans,
        "no_op": counts["no-op"],
        "failed": counts["failed"],
        "phantom": counts["phantom"],
        "first_phantom": phantoms[0] if phantoms else None,
        "failure_classes": sorted({str(p.get("class")) for p in plans if p["outcome"] == "failed"}),
    }
