"""The fault experiments end to end in the lab, and the safety net around them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from kubernetes import client, config
from labkit import BIN, REPO, cli, disruption_budget, fresh_run_env, running_lab

from actions.cluster import INTENT_ANNOTATION
from actions.nodes import drain_node
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.processes import wait_until
from harness.record.evidence import record_files
from probes.state_authority import state_authority_serving_within

pytestmark = pytest.mark.lab

CHAOS = str(BIN / "chaos")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(".lab-test-experiments") as instance:
        yield instance


@pytest.fixture
def run_env(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The lab's environment with a fresh evidence and state directory per test."""
    return fresh_run_env(lab, tmp_path, monkeypatch)


@pytest.fixture
def core(lab: Lab) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(lab.paths.kubeconfig)))


def _start(
    experiment: str, env: dict[str, str], tmp_path: Path, tag: str = ""
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            CHAOS,
            "--log-file",
            str(tmp_path / f"chaos{tag}.log"),
            "run",
            "--journal-path",
            str(tmp_path / f"journal{tag}.json"),
            str(REPO / "experiments" / experiment),
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _records(env: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in record_files(Path(env["FLYWHEEL_EVIDENCE_DIR"]))]


def _unschedulable(core: client.CoreV1Api, node: str = "bumble") -> bool:
    return bool(core.read_node(node).spec.unschedulable)


def _after_each(core: client.CoreV1Api, env: dict[str, str]) -> None:
    wait_until(lambda: not _unschedulable(core), 5, "bumble to be schedulable")
    state_authority_serving_within(within_s=120)


def _interim_restart_verdict(record: dict[str, Any]) -> bool:
    """What a pod restart of the interim posture must be recorded as: not-survived,
    because its Deployment starts the replacement on the same ReadWriteOnce claim
    while the deleted pod still holds it (two servers on one data directory), and
    for no other reason than that and, in some runs, the state key reported missing
    by the restarting SeaweedFS (README, known findings)."""
    overlaps = [o for a in record["fault_actions"] for o in a.get("volume_overlap", [])]
    return (
        record["verdict"] == "not-survived"
        and [a["status"] for a in record["fault_actions"]] == ["succeeded"]
        and {o["claim"] for o in overlaps} == {"attic-rustfs-openebs-data"}
        and all(o["overlap_s"] > 0 for o in overlaps)
        and any("two writers on one volume" in reason for reason in record["reasons"])
        and all(
            "two writers on one volume" in reason or "state key was reported missing" in reason
            for reason in record["reasons"]
        )
    )


def test_pod_delete_measures_the_outage_and_finds_the_replacement_sharing_the_volume(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start("pod-delete.yaml", run_env, tmp_path)
    output, _ = process.communicate(timeout=600)
    (record,) = _records(run_env)
    assert _interim_restart_verdict(record), output[-3000:]
    prober = record["prober"]
    assert prober["within_budget"] is True and prober["recovered"] is True
    assert 0 < prober["longest_outage_ms"] <= 60_000
    assert prober["head_samples"] > 50
    assert record["integrity"]["state_key_unchanged"] is True
    secret = run_env["AWS_SECRET_ACCESS_KEY"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".journal.json") for p in written)
    assert [p.name for p in written if secret in p.read_text(errors="replace")] == []
    _after_each(core, run_env)


def test_node_drain_is_recorded_not_survived_and_the_rollback_recovers(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start("node-drain.yaml", run_env, tmp_path)
    output, _ = process.communicate(timeout=600)
    (record,) = _records(run_env)
    assert record["verdict"] == "not-survived", output[-3000:]
    assert record["fault_actions"][0]["status"] == "succeeded"
    assert record["prober"]["recovered"] is True
    assert record["prober"]["longest_outage_ms"] > 30_000
    assert record["rollbacks"] == [{"name": "uncordon-bumble", "status": "succeeded"}]
    assert record["integrity"]["state_key_unchanged"] is True
    assert not _unschedulable(core)
    _after_each(core, run_env)


def test_node_unavailable_is_recorded_not_survived_and_the_rollback_restores_bumble(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start("node-unavailable.yaml", run_env, tmp_path)
    output, _ = process.communicate(timeout=600)
    (record,) = _records(run_env)
    assert record["verdict"] == "not-survived", output[-3000:]
    assert record["prober"]["recovered"] is True
    wait_until(
        lambda: (
            next(c.status for c in core.read_node("bumble").status.conditions if c.type == "Ready")
            == "True"
        ),
        60,
        "bumble to be Ready again",
    )
    _after_each(core, run_env)


def test_kill_9_in_the_middle_of_a_drain_then_recover_leaves_bumble_schedulable(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start("node-drain.yaml", run_env, tmp_path)
    try:
        wait_until(lambda: _unschedulable(core), 60, "the drain to cordon bumble")
        time.sleep(1.0)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert _unschedulable(core), "nothing should have undone the cordon of a killed run"
    assert INTENT_ANNOTATION in (core.read_node("bumble").metadata.annotations or {})
    env = {**os.environ, **run_env}
    first = subprocess.run(
        [str(BIN / "flywheel-chaos"), "recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert "bumble: uncordoned" in first.stdout
    assert "released the cluster lease" in first.stdout
    assert not _unschedulable(core)
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})
    second = subprocess.run(
        [str(BIN / "flywheel-chaos"), "recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0 and "nothing to recover" in second.stdout
    _after_each(core, run_env)


def test_sigint_in_the_middle_of_a_drain_runs_the_rollbacks(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start("node-drain.yaml", run_env, tmp_path)
    wait_until(lambda: _unschedulable(core), 60, "the drain to cordon bumble")
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted", output[-3000:]
    assert not _unschedulable(core)
    (record,) = _records(run_env)
    assert record["verdict"] == "aborted"
    _after_each(core, run_env)


def test_two_concurrent_runs_let_exactly_one_proceed(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    first = _start("pod-delete.yaml", run_env, tmp_path, "-a")
    second = _start("pod-delete.yaml", run_env, tmp_path, "-b")
    first.communicate(timeout=600)
    second.communicate(timeout=600)
    verdicts = sorted(r["verdict"] for r in _records(run_env))
    assert verdicts[0] == "aborted" and len(verdicts) == 2
    assert _interim_restart_verdict(next(r for r in _records(run_env) if r["verdict"] != "aborted"))
    refused = next(r for r in _records(run_env) if r["verdict"] == "aborted")
    assert "another experiment holds the cluster lease" in refused["reasons"][0]
    _after_each(core, run_env)


def test_a_disruption_budget_makes_the_drain_fail_in_time_naming_it_and_bumble_is_uncordoned(
    run_env: dict[str, str], lab: Lab, core: client.CoreV1Api
) -> None:
    with disruption_budget(lab, STATE_NAMESPACE, "attic-rustfs-openebs") as name:
        started = time.monotonic()
        with pytest.raises(ActivityFailed, match=f"disruption budget {name}"):
            drain_node(
                name="bumble",
                timeout_s=4.0,
                configuration={
                    "flywheel_node_allowlist": ["bumble"],
                    "flywheel_namespace_allowlist": ["nix-cache"],
                },
            )
        assert time.monotonic() - started < 4.0 + 3.0
    assert not _unschedulable(core)
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})


def test_nodes_outside_the_allowlist_or_missing_are_refused_before_anything_changes(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    allow = {
        "flywheel_node_allowlist": ["bumble", "wasp"],
        "flywheel_namespace_allowlist": ["nix-cache"],
    }
    before = core.read_node("honey")
    with pytest.raises(ActivityFailed, match="node 'honey' is not in the node allowlist"):
        drain_node(name="honey", configuration=allow)
    after = core.read_node("honey")
    assert after.metadata.resource_version == before.metadata.resource_version
    with pytest.raises(ActivityFailed, match="node 'wasp' does not exist"):
        drain_node(name="wasp", configuration=allow)
    assert not list(Path(run_env["FLYWHEEL_STATE_DIR"]).glob("intents/*.json"))


def test_a_dry_run_drain_shows_the_plan_and_changes_nothing(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    before = core.read_node("bumble").metadata.resource_version
    plan = drain_node(
        name="bumble",
        dry_run=True,
        configuration={
            "flywheel_node_allowlist": "bumble",
            "flywheel_namespace_allowlist": "nix-cache",
        },
    )
    assert plan["dry_run"] is True
    assert [p for p in plan["evict"] if p.startswith("nix-cache/attic-rustfs-openebs-")]
    assert core.read_node("bumble").metadata.resource_version == before


def test_the_proofs_pass_and_the_gate_stays_red_but_expects_the_interim_posture(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    for experiment in ("backup-restore.yaml", "tofu-noop-plan.yaml"):
        process = _start(experiment, run_env, tmp_path, experiment)
        output, _ = process.communicate(timeout=600)
    records = _records(run_env)
    assert [(r["fault"], r["verdict"]) for r in records] == [
        ("backup-restore", "passed"),
        ("tofu-noop-plan", "passed"),
    ], output[-2000:]
    tofu = records[1]["proof_steps"][0]["output"]
    assert tofu["plan_exit"] == 0 and tofu["locked_plan_exit"] == 1
    assert cli(["guard", "--record"], run_env).returncode == 0

    red = cli(["gate", "--json"], run_env)
    assert red.returncode == 1
    gate = json.loads(red.stdout)
    status = {r["requirement"]: r["status"] for r in gate["requirements"]}
    assert (
        status["no-op-plan"] == status["backup-restore"] == status["pre-mutation-guard"] == "proven"
    )
    assert status["s3-checks"] == status["lock-exclusivity"] == "proven"
    assert status["node-maintenance"] == status["pod-restart"] == "unproven"
    assert gate["facts"]["replicas"] == 1 and gate["facts"]["interim_posture"] is True
    assert gate["facts"]["volumes"][0]["pinned_nodes"] == ["bumble"]
    assert gate["facts"]["restart_shares_volume"] == ["attic-rustfs-openebs-data"]
    assert (
        gate["facts"]["image_pinned_by_digest"] is True and gate["facts"]["openebs_zfs_nodes"] == 1
    )

    interim = cli(["gate", "--expect-interim"], run_env)
    assert interim.returncode == 0, interim.stdout + interim.stderr
    assert "mode=interim_expected" in interim.stdout
    assert "a restart runs the replacement beside the old pod on attic-rustfs-openebs-data" in (
        " ".join(interim.stdout.split())
    )

    stale = cli(["gate", "--json", "--max-age", "0"], run_env)
    assert {
        r["status"]
        for r in json.loads(stale.stdout)["requirements"]
        if r["evidence"] != "live check"
    } <= {"stale", "unproven"}

    first = next(
        p
        for p in record_files(Path(run_env["FLYWHEEL_EVIDENCE_DIR"]))
        if "-backup-restore-" in p.name
    )
    first.write_bytes(first.read_bytes().replace(b'"passed"', b'"pass3d"', 1))
    assert cli(["evidence", "verify"], run_env).returncode == 1
    tampered = cli(["gate", "--expect-interim"], run_env)
    assert tampered.returncode == 1
    assert "TAMPERED" in tampered.stdout and first.name in tampered.stdout


def test_with_every_requirement_proven_the_gate_is_green_and_the_interim_flag_is_stale(
    run_env: dict[str, str],
) -> None:
    from harness.record.evidence import new_record, write_record

    directory = Path(run_env["FLYWHEEL_EVIDENCE_DIR"])
    for kind, fault in (
        ("experiment", "pod-delete"),
        ("experiment", "node-drain"),
        ("experiment", "node-unavailable"),
    ):
        write_record(
            new_record(kind=kind, fault=fault, verdict="survived", reasons=["synthetic"]), directory
        )
    for fault in ("backup-restore", "tofu-noop-plan"):
        write_record(
            new_record(kind="proof", fault=fault, verdict="passed", reasons=["synthetic"]),
            directory,
        )
    write_record(new_record(kind="guard", fault="guard", verdict="passed"), directory)
    green = cli(["gate"], run_env)
    assert green.returncode == 0, green.stdout
    assert "mode=ha_ready" in green.stdout
    flag = cli(["gate", "--expect-interim"], run_env)
    assert flag.returncode == 1 and "mode=stale_interim_flag" in flag.stdout
    dry = new_record(kind="experiment", fault="node-drain", verdict="survived", dry_run=True)
    write_record(dry, directory)
    assert cli(["gate"], run_env).returncode == 0  # a dry run neither proves nor disproves


def test_the_deploy_manifests_pass_a_server_side_dry_run(run_env: dict[str, str]) -> None:
    kubectl = str(BIN / "kubectl")
    subprocess.run(
        [kubectl, "apply", "-f", str(REPO / "deploy" / "00-namespace.yaml")],
        env={**os.environ, **run_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = subprocess.run(
        [kubectl, "apply", "--dry-run=server", "-f", str(REPO / "deploy")],
        env={**os.environ, **run_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "cronjob.batch/flywheel-chaos-weekly created (server dry run)" in result.stdout


def test_an_experiment_runs_as_the_least_privileged_service_account_which_is_refused_elsewhere(
    run_env: dict[str, str], lab: Lab, tmp_path: Path, core: client.CoreV1Api
) -> None:
    kubectl = str(BIN / "kubectl")
    admin = {**os.environ, **run_env}
    applied = subprocess.run(
        [
            kubectl,
            "apply",
            "-f",
            str(REPO / "deploy" / "00-namespace.yaml"),
            "-f",
            str(REPO / "deploy" / "rbac.yaml"),
        ],
        env=admin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    token = subprocess.run(
        [kubectl, "create", "token", "flywheel-chaos", "-n", "flywheel-chaos"],
        env=admin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {
                        "name": "lab",
                        "cluster": {
                            "server": f"https://127.0.0.1:{lab.ports.apiserver}",
                            "certificate-authority": str(lab.paths.pki / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "sa"}}],
            }
        )
    )
    sa_env = dict(run_env, KUBECONFIG=str(kubeconfig))
    process = _start("pod-delete.yaml", sa_env, tmp_path)
    output, _ = process.communicate(timeout=600)
    (record,) = _records(sa_env)
    assert _interim_restart_verdict(record), output[-3000:]
    sa_core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    with pytest.raises(client.ApiException) as denied:
        sa_core.delete_namespaced_pod("anything", "default")
    assert denied.value.status == 403
    with pytest.raises(client.ApiException) as denied_secret:
        sa_core.list_namespaced_secret("nix-cache")
    assert denied_secret.value.status == 403
    from actions.pods import delete_state_authority_pods

    with pytest.raises(
        ActivityFailed, match="namespace 'default' is not in the namespace allowlist"
    ):
        delete_state_authority_pods(namespace="default")
    _after_each(core, run_env)


def test_a_game_day_runs_its_suite_under_one_lease_and_writes_a_summary(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    suite = REPO / "gamedays" / "ci-short.yaml"
    result = cli(["gameday", "--json", str(suite)], run_env)
    summary = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [Path(r["experiment"]).stem for r in summary["results"]] == [
        "backup-restore",
        "pod-delete",
    ]
    assert summary["results"][0]["verdict"] == "passed"
    pod_delete = next(r for r in _records(run_env) if r["fault"] == "pod-delete")
    assert summary["results"][1]["verdict"] == pod_delete["verdict"] and _interim_restart_verdict(
        pod_delete
    )
    assert summary["breach"] is None
    assert Path(summary["summary_file"]).exists()
    assert len(_records(run_env)) == 2
    assert cli(["evidence", "verify"], run_env).returncode == 0
    _after_each(core, run_env)
