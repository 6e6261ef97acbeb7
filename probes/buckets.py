"""Chaos Toolkit probe: does the guard see a lost bucket as the incident did (NoSuchBucket)?

Pairs with :mod:`actions.buckets` (the bucket-index-loss fault): both name the
run's scratch bucket the same way, from the run id the safety control sets.
"""

import os
import re
from typing import Any, Dict  # noqa: UP035 - chaos discover types only typing.Dict as "mapping"

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from probes.s3client import CANARY_PREFIX, activity_authority
from probes.state_authority import run_checks

Result = Dict[str, Any]  # noqa: UP006

__all__ = ["guard_reports_bucket_missing"]

SCRATCH_PREFIX = "flywheel-chaos-index-"
RUN_ENV = "FLYWHEEL_RUN_ID"
OBJECT_PREFIX = f"{CANARY_PREFIX}index-loss/"
"""The scratch bucket's objects live under the canary prefix too: the harness writes no
other key anywhere."""


def scratch_bucket(bucket: str = "") -> str:
    """The scratch bucket of this run (``flywheel-chaos-index-<run id>``), or ``bucket``."""
    if bucket:
        return bucket
    run = re.sub(r"[^a-z0-9-]", "-", os.environ.get(RUN_ENV, "").lower()).strip("-")
    if not run:
        raise ActivityFailed(
            "no run id to name the scratch bucket after (hint: run the experiment with "
            "chaos run and its harness.controls.safety control)"
        )
    return (SCRATCH_PREFIX + run)[:63].rstrip("-")


def guard_reports_bucket_missing(
    bucket: str = "",
    key: str = OBJECT_PREFIX + "object-0",
    timeout_s: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Result:
    """Run the pre-mutation guard's checks against a lost scratch bucket; succeed when they fail
    closed with ``no-such-bucket``.

    ``bucket`` defaults to this run's scratch bucket (see ``actions.buckets``),
    ``key`` to one of its objects; the checks only HEAD that key and write
    nothing where the bucket is missing. Returns ``{"bucket", "key",
    "guard_passed", "failed": [{"check", "class"}]}``. Raises
    ``ActivityFailed`` when the guard passes, or fails without any check
    naming ``no-such-bucket`` (the incident's answer).
    """
    name = scratch_bucket(bucket)
    authority = activity_authority("", name, key, timeout_s, configuration, secrets)
    results = run_checks(authority)
    failed = [
        {"check": r["name"], "class": (r.get("error") or {}).get("class")}
        for r in results
        if not r["ok"]
    ]
    answer = {"bucket": name, "key": key, "guard_passed": not failed, "failed": failed}
    if not failed:
        raise ActivityFailed(f"the guard passed against {name}: the bucket is not lost")
    if not any(f["class"] == "no-such-bucket" for f in failed):
        raise ActivityFailed(
            f"the guard failed against {name}, but no check said no-such-bucket: {failed}"
        )
    return answer
