"""The replicated RustFS candidate (``lab up --topology ha-rustfs``): restarts, a drain, two nodes lost.

Needs RustFS 1.0.1 built (``flywheel-chaos lab build --rustfs``); without it the
module is skipped and says so. Repeated-run verdicts are measured by
``benchmarks/ha_candidate.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from actions.pods import delete_state_authority_pods
from flywheel_chaos.s3.authority import load_authority
from harness.controls.lease import holding_lease
from harness.controls.prober import Prober, outage_windows, summarize
from harness.lab.build import rustfs_built
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.processes import wait_until
from probes.state_authority import state_authority_serving_within
from tests.support.labkit import chaos_run, cli

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        not rustfs_built(), reason="RustFS is not built: flywheel-chaos lab build --rustfs"
    ),
]
TOPOLOGY = "ha-rustfs"


def test_three_servers_one_per_node_with_two_single_writer_drives_each(
    core: client.CoreV1Api, run_env: dict[str, str]
) -> None:
    pods = core.list_namespaced_pod(STATE_NAMESPACE).items
    assert sorted(p.spec.node_name for p in pods) == ["bumble", "honey", "sting"]
    claims = core.list_namespaced_persistent_volume_claim(STATE_NAMESPACE).items
    assert len(claims) == 6 and {c.spec.access_modes[0] for c in claims} == {"ReadWriteOncePod"}
    gate = json.loads(cli(["gate", "--json"], run_env).stdout)
    status = {r["requirement"]: r["status"] for r in gate["requirements"]}
    assert {
        status[n] for n in ("ha-endpoints", "ha-data", "ha-restart-volume", "ha-volume-nodes")
    } == {"proven"}


@pytest.mark.parametrize("node", ["bumble", "honey", "sting"])
def test_each_member_restart_keeps_reads_and_writes_working(
    run_env: dict[str, str], node: str
) -> None:
    prober = Prober(load_authority())
    prober.start()
    time.sleep(1.0)
    with holding_lease():
        result = delete_state_authority_pods(
            namespace=STATE_NAMESPACE, label_selector=f"flywheel.lab/member=rustfs-{node}"
        )
    assert result["volume_overlap"] == []  # a StatefulSet waits for its old pod
    state_authority_serving_within(within_s=60, stable_s=3)
    # the prober, too, must see the outage end (a restarted member can still answer 503)
    wait_until(
        lambda: not any(w["open"] for w in outage_windows(prober.snapshot(), time.time())),
        60,
        "the prober to see the authority serving again",
    )
    time.sleep(1.0)
    # as the survival control does: stop once no window is open (a member that rejoins can
    # cost a second short window after the first closed; seen once in CI, 2026-12-02)
    closed = prober.finish(time.monotonic() + 60)
    summary = summarize(prober.snapshot(), prober.started_at, prober.stopped_at, budget_ms=60_000)
    print(
        f"{node}: longest outage {summary['longest_outage_ms']} ms, errors {summary['error_classes']},"
        f" windows {[(w['ms'], w['errors'], w['open']) for w in summary['outages']]}"
    )
    assert summary["state_key_missing"] == 0
    assert closed and summary["canary_samples"] > 0 and summary["recovered"] is True


def test_a_drain_of_bumble_is_survived_or_fails_only_on_the_known_503_after_it(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    """The drain itself costs no outage; what may fail, in some runs, is the lock race of the
    steady state checked right after it: RustFS answers one of the 8 racing PUTs 503
    SlowDownRead while bumble's member rejoins (README, known findings; how often is
    measured by ``ha_candidate.py --shapes node-drain``). Any other not-survived fails."""
    record, process = chaos_run("node-drain", run_env, tmp_path)
    output = process.stdout + process.stderr
    assert record["fault_effect"]["took_effect"] is True
    prober = record["prober"]
    print(f"drain: {record['verdict']}, longest outage {prober['longest_outage_ms']} ms")
    assert prober["recovered"] is True and prober["state_key_missing"] == 0
    assert prober["longest_outage_ms"] <= prober["budget_ms"], prober
    if record["verdict"] != "survived":
        assert record["reasons"] == ["the steady state did not hold after the fault"], output
        journal = json.loads((tmp_path / "journal.json").read_text())
        failed = [
            p for p in journal["steady_states"]["after"]["probes"] if p["status"] != "succeeded"
        ]
        assert [p["activity"]["name"] for p in failed] == ["lock-exclusive"], failed
        assert "unavailable: SlowDownRead" in str(failed[0].get("exception")), failed
    state_authority_serving_within(within_s=60)


def test_losing_two_nodes_fails_closed_with_a_classified_error(
    lab: Lab, run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    try:
        for node in ("bumble", "honey"):
            lab.node_crash(node)
        time.sleep(3.0)
        guard = cli(["guard", "--json", "--timeout", "3"], run_env)
        assert guard.returncode == 1
        report = json.loads(guard.stdout)
        classes = {c["error"]["class"] for c in report["checks"] if not c["ok"]}
        assert classes and classes <= {"unavailable", "endpoint-unreachable", "timeout"}, classes
        assert "no-such-key" not in classes and "no-such-bucket" not in classes
    finally:
        for node in ("bumble", "honey"):
            lab.node_start(node)
    state_authority_serving_within(within_s=120, stable_s=3)
