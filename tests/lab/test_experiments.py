"""The fault experiments end to end in the lab, and the safety net around them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaoslib.exceptions import ActivityFailed
from kubernetes import client, config

from actions.nodes import cordon_node, drain_node, uncordon_node
from flywheel_chaos.kube.intents import INTENT_ANNOTATION
from flywheel_chaos.kube.safety import LEASE_NAME
from flywheel_chaos.s3.authority import load_authority
from harness.controls.lease import holding_lease
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.processes import wait_until
from harness.record.evidence import new_record, record_files, write_record
from harness.record.recorder import target_fingerprint
from harness.record.signing import load_signer
from harness.recover import recover
from probes.state_authority import state_authority_serving_within
from tests.support.labkit import BIN, REPO, chaos_start, cli, disruption_budget, write_full_set

pytestmark = pytest.mark.lab

CHAOS = str(BIN / "chaos")


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


def _what_a_drain_changes(core: client.CoreV1Api, node: str = "bumble") -> dict[str, Any]:
    """What a cordon, a taint or an eviction would change on ``node``: its spec, labels and
    annotations, and the pods bound to it (not its resourceVersion, which the node's own
    status heartbeats move)."""
    body = core.read_node(node)
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    return {
        "unschedulable": bool(body.spec.unschedulable),
        "taints": [t.to_dict() for t in body.spec.taints or []],
        "labels": dict(body.metadata.labels or {}),
        "annotations": dict(body.metadata.annotations or {}),
        "pods": sorted(p.metadata.uid for p in pods),
    }


def _after_each(core: client.CoreV1Api, env: dict[str, str]) -> None:
    wait_until(lambda: not _unschedulable(core), 5, "bumble to be schedulable")
    state_authority_serving_within(within_s=120)


def _kubectl(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubectl"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


@contextmanager
def _component_applied(env: dict[str, str], tmp_path: Path, component: str) -> Iterator[None]:
    """deploy/base with ``deploy/components/<component>`` applied, as an overlay that lists
    it would be (before the wiring); on the way out, what the component added is deleted."""
    overlay = tmp_path / f"with-{component}"
    overlay.mkdir()
    deploy = os.path.relpath(REPO / "deploy", overlay)  # kustomize refuses absolute paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"{deploy}/base"],
                "components": [f"{deploy}/components/{component}", f"{deploy}/components/wiring"],
            }
        )
    )

    def built(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
        text = _kubectl(env, "kustomize", str(path)).stdout
        return {
            (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in yaml.safe_load_all(text)
            if d
        }

    added = {k: v for k, v in built(overlay).items() if k not in built(REPO / "deploy" / "base")}
    assert added, f"deploy/components/{component} adds nothing to deploy/base"
    _kubectl(env, "apply", "-k", str(overlay))
    try:
        yield
    finally:
        leftovers = tmp_path / f"{component}-added.yaml"
        leftovers.write_text(yaml.safe_dump_all(list(added.values())))
        _kubectl(env, "delete", "--ignore-not-found", "-f", str(leftovers))


def _service_account_kubeconfig(lab: Lab, run_env: dict[str, str], tmp_path: Path) -> Path:
    """deploy/base applied (its RBAC and CronJob), and a kubeconfig for its ServiceAccount's
    token."""
    _kubectl(run_env, "apply", "-k", str(REPO / "deploy" / "base"))
    token = _kubectl(
        run_env, "create", "token", "flywheel-chaos", "-n", "flywheel-chaos"
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
    return kubeconfig


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
    # the verdict reaches whoever ran it: the last word of chaos run, and its exit code
    assert process.returncode == 1
    assert "flywheel-chaos verdict: not-survived: " in output
    assert record["fault_effect"]["took_effect"] is True
    assert record["prober"]["coverage"]["largest_gap_ms"] < 1000
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
    assert process.returncode == 1 and "flywheel-chaos verdict: not-survived" in output
    assert record["fault_actions"][0]["status"] == "succeeded"
    assert "nix-cache/attic-rustfs-openebs-" in record["fault_effect"]["why"]
    # the RCA bundle beside the record: the Pending replacement, the volume's node
    # affinity, and the last lines of the pod the drain evicted
    bundle = Path(run_env["FLYWHEEL_EVIDENCE_DIR"]) / record["rca"]["file"]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == record["rca"]["sha256"]
    with tarfile.open(bundle) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    summary = files["rca.md"]
    assert "was Pending: it could not be scheduled" in summary and "node affinity" in summary
    evicted = record["fault_actions"][0]["output"]["pods"][0]["pod"].split("/", 1)[1]
    logs = [text for name, text in files.items() if name.startswith(f"k8s/logs/{evicted}/")]
    assert logs and any(text.strip() for text in logs)
    assert record["prober"]["recovered"] is True
    assert record["prober"]["longest_outage_ms"] > 30_000
    assert record["rollbacks"] == [{"name": "uncordon-target-node", "status": "succeeded"}]
    assert record["integrity"]["state_key_unchanged"] is True
    assert not _unschedulable(core)
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
    with (
        disruption_budget(lab, STATE_NAMESPACE, "attic-rustfs-openebs") as name,
        holding_lease(),
    ):
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
    before = _what_a_drain_changes(core, "honey")
    with pytest.raises(ActivityFailed, match="node 'honey' is not in the node allowlist"):
        drain_node(name="honey", configuration=allow)
    assert _what_a_drain_changes(core, "honey") == before
    with pytest.raises(ActivityFailed, match="node 'wasp' does not exist"):
        drain_node(name="wasp", configuration=allow)
    assert not list(Path(run_env["FLYWHEEL_STATE_DIR"]).glob("intents/*.json"))


def test_a_dry_run_drain_shows_the_plan_and_changes_nothing(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    def node_facts() -> tuple[Any, ...]:
        node = core.read_node("bumble")  # its status heartbeats change resourceVersion: not ours
        taints = sorted((t.key, t.effect) for t in node.spec.taints or [])
        return (node.spec.unschedulable, taints, node.metadata.annotations)

    def settled() -> bool:
        # an earlier test's uncordon leaves the unschedulable taint for the node lifecycle
        # controller to remove, asynchronously: what this test reads must be its own
        unschedulable, taints, _ = node_facts()
        return (
            not unschedulable and ("node.kubernetes.io/unschedulable", "NoSchedule") not in taints
        )

    wait_until(settled, 60, "bumble to be schedulable with no unschedulable taint left")
    before = node_facts()
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
    assert node_facts() == before


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
    # the singleton's posture, each unmet fact a row of its own
    assert status["ha-endpoints"] == status["ha-data"] == "failed"
    assert status["ha-restart-volume"] == status["ha-volume-nodes"] == "failed"
    live = gate["posture"]
    assert live["replicas"] == 1 and live["interim_posture"] is True
    assert live["data_only_on"] == ["bumble"] and live["volume_nodes"] == ["bumble"]
    assert live["restart_shares_volume"] == ["attic-rustfs-openebs-data"]
    assert live["image_pinned_by_digest"] is True
    assert gate["fingerprint"]["cluster"]["kube_system_uid"]

    rows = {r["requirement"]: r for r in gate["requirements"]}
    assert rows["ha-restart-volume"]["detail"].startswith(
        "a Deployment restart runs two servers on attic-rustfs-openebs-data"
    )
    interim = cli(["gate", "--expect-interim"], run_env)
    assert interim.returncode == 0, interim.stdout + interim.stderr
    assert "mode=interim_expected" in interim.stdout

    assert cli(["gate", "--max-age", "0"], run_env).returncode == 2  # not a number of days
    stale = cli(["gate", "--json", "--max-age", "0.000001"], run_env)  # a tenth of a second
    assert {
        r["status"]
        for r in json.loads(stale.stdout)["requirements"]
        if r["evidence"] not in ("live check", "live facts")
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


def _survived_records(directory: Path, env: dict[str, str]) -> None:
    """What five survived runs of every fault against the live target would leave."""
    live = target_fingerprint(load_authority())
    write_full_set(directory, live, load_signer(env["FLYWHEEL_EVIDENCE_SIGNING_KEY"]))


def test_survived_records_with_a_singleton_live_deployment_keep_the_gate_red_on_posture(
    run_env: dict[str, str],
) -> None:
    _survived_records(Path(run_env["FLYWHEEL_EVIDENCE_DIR"]), run_env)
    red = cli(["gate", "--json"], run_env)
    assert red.returncode == 1
    rows = {r["requirement"]: r for r in json.loads(red.stdout)["requirements"]}
    assert {n for n, r in rows.items() if r["status"] != "proven"} == {
        "ha-endpoints",
        "ha-data",
        "ha-restart-volume",
        "ha-volume-nodes",
    }
    assert rows["pod-restart"]["detail"].startswith("5/5 survived")
    assert "1 ready endpoint(s) on 1 node(s) (bumble)" in rows["ha-endpoints"]["detail"]


def test_the_deploy_manifests_pass_a_server_side_dry_run(run_env: dict[str, str]) -> None:
    kubectl = str(BIN / "kubectl")
    result = subprocess.run(
        [kubectl, "apply", "--dry-run=server", "-k", str(REPO / "deploy" / "overlays" / "lab")],
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
    kubeconfig = _service_account_kubeconfig(lab, run_env, tmp_path)
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
    # the interim pod restart is not-survived: the game day completes and fails on it
    assert result.returncode == 1, result.stderr[-2000:]
    assert summary["completed"] is True and summary["all_passed"] is False
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
    gameday_files = list(Path(summary["summary_file"]).parent.iterdir())
    assert {p.suffix for p in gameday_files} >= {".log", ".json"}
    secret = run_env["AWS_SECRET_ACCESS_KEY"]
    assert [p.name for p in gameday_files if secret in p.read_text(errors="replace")] == []
    assert cli(["evidence", "verify"], run_env).returncode == 0
    _after_each(core, run_env)


# ------------------------------------------------------------ fail closed ---


def _lease(lab: Lab) -> Any:
    api = config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
    return client.CoordinationV1Api(api).read_namespaced_lease(LEASE_NAME, "kube-system")


def test_without_the_lease_role_a_drain_stops_before_anything_changes(
    run_env: dict[str, str], lab: Lab, tmp_path: Path, core: client.CoreV1Api
) -> None:
    kubeconfig = _service_account_kubeconfig(lab, run_env, tmp_path)
    _kubectl(run_env, "delete", "rolebinding", "flywheel-chaos-lease", "-n", "kube-system")
    try:
        before = _what_a_drain_changes(core)
        sa_env = dict(run_env, KUBECONFIG=str(kubeconfig))
        process = _start("node-drain.yaml", sa_env, tmp_path)
        output, _ = process.communicate(timeout=300)
        assert process.returncode != 0
        (record,) = _records(sa_env)
        assert record["verdict"] == "aborted", output[-3000:]
        assert "cannot take the cluster lease" in record["reasons"][0]
        assert "403" in record["reasons"][0]
        assert record["fault_actions"] == []
        assert _what_a_drain_changes(core) == before
        assert not _unschedulable(core)
    finally:
        _kubectl(run_env, "apply", "-k", str(REPO / "deploy" / "base"))


def test_a_stolen_lease_aborts_the_run_its_rollbacks_run_and_the_thief_is_never_renewed(
    run_env: dict[str, str], lab: Lab, tmp_path: Path, core: client.CoreV1Api
) -> None:
    coordination = client.CoordinationV1Api(
        config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
    )
    process = _start("node-drain.yaml", run_env, tmp_path)
    wait_until(lambda: _unschedulable(core), 60, "the drain to cordon bumble")
    # another identity writes itself in as the holder (what a host whose clock runs far
    # ahead, judging expiry by the holder's renewTime, would do)
    lease = _lease(lab)
    lease.spec.holder_identity = "thief/1/steals"
    lease.spec.lease_duration_seconds = 300
    coordination.replace_namespaced_lease(LEASE_NAME, "kube-system", lease)
    stolen = _lease(lab)
    output, _ = process.communicate(timeout=300)
    (record,) = _records(run_env)
    assert record["verdict"] == "aborted", output[-3000:]
    # the holder changed, or (when a renewal raced the expiry) the lease was written by another
    assert record["reasons"][0].startswith("lease lost: "), record["reasons"]
    assert record["rollbacks"] == [{"name": "uncordon-target-node", "status": "succeeded"}]
    assert not _unschedulable(core)
    after = _lease(lab)
    assert after.spec.holder_identity == "thief/1/steals"
    assert after.metadata.resource_version == stolen.metadata.resource_version
    coordination.delete_namespaced_lease(
        LEASE_NAME,
        "kube-system",
        body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=after.metadata.resource_version)
        ),
    )
    _after_each(core, run_env)


def test_another_runs_intent_survives_a_failed_run_and_recover_uncordons_bumble_every_time(
    run_env: dict[str, str], lab: Lab, core: client.CoreV1Api
) -> None:
    for trial in range(10):
        # run A cordons bumble and dies: nothing renews or releases its (2 s) lease
        with holding_lease(duration_s=2) as keeper_a:
            cordon_node("bumble", configuration=None)
            keeper_a.stop()
            keeper_a.lost = "died"  # so that leaving the block releases nothing
        # run B sees A's lease unchanged for its duration, takes it, finds A's change, fails,
        # and cleans up only its own
        with holding_lease():
            with pytest.raises(ActivityFailed, match="carries an undone cordon of run"):
                drain_node("bumble", timeout_s=10)
            assert uncordon_node("bumble")["skipped"].startswith("this run cordoned nothing")
        assert _unschedulable(core), f"trial {trial}: A's cordon must stay for recover"
        assert INTENT_ANNOTATION in (core.read_node("bumble").metadata.annotations or {})
        done = recover()
        assert "bumble: uncordoned" in done, f"trial {trial}: {done}"
        assert not _unschedulable(core)
        assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})


def test_recover_refuses_while_a_live_run_holds_the_lease_unless_forced(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    with holding_lease() as keeper:
        cordon_node("bumble")
        refused = cli(["recover"], run_env)
        assert refused.returncode == 1
        assert (
            f"a live run holds the cluster lease kube-system/{LEASE_NAME}: {keeper.identity}"
            in (" ".join(refused.stderr.split()))
        )
        assert _unschedulable(core)
        planned = cli(["recover", "--dry-run", "--force"], run_env)
        assert planned.returncode == 0 and "would undo bumble: cordon of run" in planned.stdout
        assert _unschedulable(core)
        forced = cli(["recover", "--force"], run_env)
        assert forced.returncode == 0 and "bumble: uncordoned" in forced.stdout
        assert not _unschedulable(core)


def test_a_run_with_planted_secrets_writes_none_of_them_anywhere(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    planted = "Pl4nt3d-Zk8-secret-value"
    experiment = yaml.safe_load((REPO / "experiments" / "pod-delete.yaml").read_text())
    experiment["secrets"] = {"s3": {"vault_password": planted}}
    experiment["configuration"]["credentials"] = {"user": "ops", "pin": planted}
    experiment["configuration"]["mirror"] = f"https://AKIAPLANT:{planted}@127.0.0.1:1/"
    experiment["method"].append(
        {
            "type": "probe",
            "name": "an-exception-carrying-the-secret",
            "provider": {
                "type": "python",
                "module": "probes.state_authority",
                "func": "state_key_readable",
                "arguments": {"endpoint": f"http://ops:{planted}@127.0.0.1:1", "timeout_s": 1},
            },
        }
    )
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(experiment))
    process = chaos_start(path, run_env, tmp_path)
    output, _ = process.communicate(timeout=600)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != path]
    assert len(_records(run_env)) == 1 and (tmp_path / "chaos.log").exists(), output[-2000:]
    assert [p.name for p in files if planted in p.read_text(errors="replace")] == []
    assert planted not in output
    _after_each(core, run_env)


def test_a_drain_of_a_node_without_the_authority_is_never_survived(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    text = (REPO / "experiments" / "node-drain.yaml").read_text().replace("bumble", "honey")
    path = tmp_path / "drain-honey.yaml"
    path.write_text(text)
    process = subprocess.Popen(
        [CHAOS, "run", "--journal-path", str(tmp_path / "journal.json"), str(path)],
        env={**os.environ, **run_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=600)
    (record,) = _records(run_env)
    assert record["verdict"] == "aborted", output[-3000:]
    assert record["reasons"][0].startswith(
        "fault did not take effect: no pod of the state authority"
    )
    assert process.returncode == 1 and "flywheel-chaos verdict: aborted" in output
    assert not _unschedulable(core, "honey")


def test_an_rca_bundle_larger_than_its_bound_is_cut_with_a_note_and_never_fails(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    from harness.record.rca import collect

    result = collect(load_authority(), tmp_path / "rca.tar.gz", max_bytes=2_000)
    assert (tmp_path / "rca.tar.gz").exists()
    assert any("cut, the bundle's 2000 byte bound was reached" in n for n in result["notes"])
    with tarfile.open(tmp_path / "rca.tar.gz") as tar:
        names = tar.getnames()
    assert "rca.md" in names and "s3/view.json" in names and "disk/listing.json" in names


def test_rca_on_a_recorded_run_writes_a_bundle_and_a_record_that_explains_it(
    run_env: dict[str, str],
) -> None:
    directory = Path(run_env["FLYWHEEL_EVIDENCE_DIR"])
    record = new_record(fault="pod-delete", verdict="not-survived", reasons=["by hand"])
    write_record(record, directory, signer=load_signer())  # the lab's key, as its runs sign
    result = cli(["rca", "--json"], run_env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    bundle = directory / answer["file"]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == answer["sha256"]
    with tarfile.open(bundle) as tar:
        summary = tar.extractfile("rca.md").read().decode()  # type: ignore[union-attr]
    assert "verdict **not-survived**" in summary and "by hand" in summary
    rca_record = json.loads(Path(answer["record"]).read_text())
    assert rca_record["kind"] == "rca" and rca_record["explains"] == record["id"]
    assert cli(["evidence", "verify"], run_env).returncode == 0
    # a bundle altered after the fact is caught by verify
    bundle.write_bytes(bundle.read_bytes() + b"x")
    verify = cli(["evidence", "verify"], run_env)
    assert verify.returncode == 1 and answer["file"].split("/")[-1] in verify.stdout + verify.stderr


def test_as_the_service_account_the_rca_reads_everything_and_its_debug_pod_needs_the_opt_in(
    run_env: dict[str, str], lab: Lab, tmp_path: Path
) -> None:
    directory = Path(run_env["FLYWHEEL_EVIDENCE_DIR"])
    written = new_record(fault="pod-delete", verdict="error", reasons=["by hand"])
    write_record(written, directory, signer=load_signer())
    sa_env = dict(run_env, KUBECONFIG=str(_service_account_kubeconfig(lab, run_env, tmp_path)))

    def rca() -> dict[str, Any]:
        result = cli(["rca", "--json", "--disk-view", "debug-pod"], sa_env)
        assert result.returncode == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    refused = rca()
    # deploy/base/rbac.yaml lets it read pods, logs, events, claims, volumes and nodes; the disk
    # view's debug pod is refused until deploy/components/disk-view is applied
    assert [n for n in refused["notes"] if not n.startswith("disk view:")] == []
    assert any("was refused: 403" in n for n in refused["notes"]), refused["notes"]
    with _component_applied(run_env, tmp_path, "disk-view"):
        allowed = rca()
    assert allowed["notes"] == []
    with tarfile.open(directory / allowed["file"]) as tar:
        disk = json.loads(tar.extractfile("disk/listing.json").read())  # type: ignore[union-attr]
    assert disk["collected"] and disk["how"] == "debug-pod"
    assert disk["bucket_marker_count"] > 0


def test_the_rca_debug_pod_mounts_a_claim_nobody_uses_read_only_on_its_volumes_node(
    run_env: dict[str, str],
    lab: Lab,
    tmp_path: Path,
    core: client.CoreV1Api,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.record.rca import collect

    name = "flywheel-test-idle"
    volume = f"pvc-{name}"
    data = lab.paths.node_dir("bumble") / "volumes" / volume
    (data / "tofu-state").mkdir(parents=True)
    (data / "tofu-state" / "xl.meta").write_bytes(b"idle metadata")
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "flywheel-test",
                "claimRef": {"namespace": STATE_NAMESPACE, "name": name},
                "csi": {"driver": "zfs.csi.openebs.io", "volumeHandle": volume},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "openebs.io/nodeid",
                                        "operator": "In",
                                        "values": ["bumble"],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        }
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            STATE_NAMESPACE,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "flywheel-test",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        wait_until(
            lambda: (
                core.read_namespaced_persistent_volume_claim(name, STATE_NAMESPACE).status.phase
                == "Bound"
            ),
            30,
            f"claim {name} bound",
        )
        monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
        result = collect(load_authority(), tmp_path / "rca.tar.gz")
    finally:
        core.delete_namespaced_persistent_volume_claim(name, STATE_NAMESPACE)
        core.delete_persistent_volume(volume)
        shutil.rmtree(data)
    assert result["notes"] == []
    with tarfile.open(tmp_path / "rca.tar.gz") as tar:
        disk = json.loads(tar.extractfile("disk/listing.json").read())  # type: ignore[union-attr]
    idle = [p for p in disk["debug_pods"] if volume in p["volumes"]]
    assert idle == [
        {"namespace": STATE_NAMESPACE, "node": "bumble", "volumes": {volume: f"claim {name}"}}
    ]
    entries = {e["path"]: e for e in disk["entries"]}
    listed = entries[f"bumble:{volume}/tofu-state/xl.meta"]
    assert listed["sha256"] == hashlib.sha256(b"idle metadata").hexdigest()
    # the server's own claim, in use, is read through bumble from the opt-in namespace
    assert [p["namespace"] for p in disk["debug_pods"] if volume not in p["volumes"]] == [
        "flywheel-chaos"
    ]


def test_recover_deletes_an_rca_debug_pod_left_over_past_its_deadline_and_no_newer_one(
    run_env: dict[str, str], core: client.CoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.recover
    from flywheel_chaos.diskview import DebugPod, Mount, manifest
    from harness.recover import recover

    # what an RCA killed before its finally leaves: a debug pod that can never start
    never = Mount("pvc-gone", "gone", host_path="/var/lib/kubelet/pods/0000/volumes/x/pvc/mount")
    for name in ("flywheel-chaos-disk-view-left-1", "flywheel-chaos-disk-view-left-2"):
        core.create_namespaced_pod(
            "flywheel-chaos",
            manifest(DebugPod("flywheel-chaos", "bumble", (never,)), name, "busybox:1.36", 30),
        )
    kept = recover(dry_run=True)
    assert not [line for line in kept if "debug pod" in line]  # not past their deadline
    monkeypatch.setattr(harness.recover, "DEBUG_POD_STALE_S", 0.0)
    planned = recover(dry_run=True)
    assert sum("would delete the RCA debug pod flywheel-chaos/" in line for line in planned) == 2
    done = recover()
    assert sum("deleted the RCA debug pod flywheel-chaos/" in line for line in done) == 2
    wait_until(
        lambda: (
            not core.list_namespaced_pod(
                "flywheel-chaos", label_selector="flywheel-chaos.io/rca=disk-view"
            ).items
        ),
        30,
        "the left-over debug pods gone",
    )
    assert not [line for line in recover() if "debug pod" in line]  # safe to run twice
