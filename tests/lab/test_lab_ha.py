"""The replicated candidate (``lab up --topology ha-seaweedfs``) against the lab's real kube-apiserver.

Deterministic facts only: placement, the guard across three gateways, what
the gate reads, recovery from losing one gateway, and single-writer volumes
across a restart. How the candidate fares under each fault (verdicts, outage
lengths) varies run to run and is measured by ``benchmarks/ha_candidate.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from actions.pods import delete_state_authority_pods
from flywheel_chaos.s3.authority import load_authority
from harness.controls.lease import holding_lease
from harness.errors import ConfigError
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.lab.paths import LabPaths
from harness.processes import wait_until
from harness.record.evidence import new_record, write_record
from harness.record.rca import collect
from harness.record.recorder import target_fingerprint
from harness.record.signing import load_signer
from harness.record.verdict import RULES_VERSION
from probes.state_authority import state_authority_serving_within
from tests.support.labkit import REPO, bin_dir_variant, cli, fault_actions, write_full_set

pytestmark = pytest.mark.lab
TOPOLOGY = "ha"

GATEWAYS = "app.kubernetes.io/name=attic-rustfs-openebs"
COMPONENTS = ("tofu-meta", "seaweedfs-master", "seaweedfs-volume", "attic-rustfs-openebs")


def _ready_gateways(core: client.CoreV1Api) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(
        STATE_NAMESPACE, label_selector=GATEWAYS, _request_timeout=5
    ).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def test_every_node_runs_one_member_of_each_component(core: client.CoreV1Api) -> None:
    pods = core.list_namespaced_pod(STATE_NAMESPACE, _request_timeout=5).items
    placed = Counter(
        (p.metadata.labels.get("app.kubernetes.io/name"), p.spec.node_name)
        for p in pods
        if p.status.phase == "Running"
    )
    assert placed == Counter(
        {(component, node): 1 for component in COMPONENTS for node in ("bumble", "honey", "sting")}
    )


def _guard(run_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``flywheel-chaos guard --json``, once more after 5 s when its only failure was a canary
    read answering NoSuchKey right after its write: seen once in CI-like runs under extra
    load (a read through another gateway than the write; README, known findings). The
    guard itself stays strict; a second such failure, or any other, fails the test."""
    result = cli(["guard", "--json"], run_env)
    if result.returncode == 1:
        failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
        if [(c["name"], c["error"]["class"]) for c in failed] == [
            ("canary-write-read-delete", "no-such-key")
        ]:
            time.sleep(5)
            result = cli(["guard", "--json"], run_env)
    return result


def test_the_guard_passes_with_three_gateways_behind_one_service(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    assert len(_ready_gateways(core)) == 3
    result = _guard(run_env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    # the 8 racers are spread over the gateways by the service proxy: still one winner
    assert checks["lock-exclusive"]["result"]["race_winners"] == 1


def test_the_gate_reads_a_replicated_posture_and_refuses_the_interim_flag(
    run_env: dict[str, str],
) -> None:
    guard = _guard(run_env)  # the gate's mode needs a passing guard to say posture_unknown
    assert guard.returncode == 0, guard.stdout + guard.stderr
    result = cli(["gate", "--json", "--expect-interim"], run_env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["mode"] == "posture_unknown"
    live = report["posture"]
    assert live["replicas"] == 3 and live["ready_endpoints"] == 3
    assert live["endpoint_nodes"] == ["bumble", "honey", "sting"]
    assert live["data_only_on"] == [] and live["restart_shares_volume"] == []
    assert live["volume_nodes"] == ["bumble", "honey", "sting"]
    assert live["interim_posture"] is False
    status = {r["requirement"]: r["status"] for r in report["requirements"]}
    assert {
        status[n] for n in ("ha-endpoints", "ha-data", "ha-restart-volume", "ha-volume-nodes")
    } == {"proven"}


def test_a_full_signed_fault_proven_set_makes_the_gate_green_and_any_one_defect_red(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    live = target_fingerprint(load_authority())
    signer = load_signer(run_env["FLYWHEEL_EVIDENCE_SIGNING_KEY"])
    good = Path(run_env["FLYWHEEL_EVIDENCE_DIR"])
    write_full_set(good, live, signer)
    assert _guard(run_env).returncode == 0  # the live checks the gate runs
    green = cli(["gate"], run_env)
    assert green.returncode == 0, green.stdout + green.stderr
    assert "mode=ha_ready" in green.stdout
    flag = cli(["gate", "--expect-interim"], run_env)
    assert flag.returncode == 1 and "mode=stale_interim_flag" in flag.stdout

    def red(name: str, env: dict[str, str], *args: str) -> dict[str, Any]:
        result = cli(["gate", "--json", *args], env)
        assert result.returncode == 1, (name, result.stdout[-2000:], result.stderr[-2000:])
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def with_extra(name: str, **fields: Any) -> dict[str, str]:
        directory = tmp_path / name
        shutil.copytree(good, directory)
        write_record(new_record(rules_version=RULES_VERSION, **fields), directory, signer=signer)
        return {**run_env, "FLYWHEEL_EVIDENCE_DIR": str(directory)}

    def row(report: dict[str, Any], name: str) -> dict[str, Any]:
        return next(r for r in report["requirements"] if r["requirement"] == name)

    weak = tmp_path / "weak.yaml"
    weak.write_text((REPO / "gate.yaml").read_text().replace("runs: 5", "runs: 1"))
    assert red("weaker", run_env, "--policy", str(weak))["mode"] == "weaker_policy"
    unsigned = {**run_env, "FLYWHEEL_EVIDENCE_PUBLIC_KEY": ""}  # os.environ has it too
    assert red("unsigned", unsigned)["mode"] == "unsigned"
    prober = {"longest_outage_ms": 900.0, "coverage": {"largest_gap_ms": 150.0}}
    failing = with_extra(
        "failing", fault="pod-delete", verdict="not-survived", reasons=["HEAD answered NoSuchKey"],
        fingerprint=live, fault_actions=fault_actions("pod-delete", live), prober=prober,
    )  # fmt: skip
    assert "not-survived at" in row(red("failing", failing), "pod-restart")["detail"]
    other_app = with_extra(
        "other-app", fault="node-drain", verdict="survived", fingerprint=live,
        fault_actions=fault_actions("node-drain", live, owner="some-other-app"), prober=prober,
    )  # fmt: skip
    detail = row(red("other-app", other_app), "node-maintenance")["detail"]
    assert "does not show the fault took effect" in detail
    unknown = with_extra(
        "unknown-target", fault="node-unavailable", verdict="not-survived", reasons=["down"],
        fingerprint={**live, "error": "reading nix-cache: 403"},
        fault_actions=fault_actions("node-unavailable", live), prober=prober,
    )  # fmt: skip
    detail = row(red("unknown-target", unknown), "node-unavailability")["detail"]
    assert "failed against a target that could not be read" in detail
    tampered = tmp_path / "tampered"
    shutil.copytree(good, tampered)
    victim = sorted(tampered.glob("*-pod-delete-*.json"))[-1]
    victim.write_text(victim.read_text().replace('"survived"', '"survived" '))
    env = {**run_env, "FLYWHEEL_EVIDENCE_DIR": str(tampered)}
    assert red("tampered", env)["mode"] == "evidence_tampered"


def test_losing_a_gateway_keeps_state_served_and_a_replacement_returns(
    run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    (on_bumble,) = [p for p in _ready_gateways(core) if p.spec.node_name == "bumble"]
    core.delete_namespaced_pod(on_bumble.metadata.name, STATE_NAMESPACE, _request_timeout=5)
    served = state_authority_serving_within(within_s=60, stable_s=3)
    assert served["seconds"] < 60
    wait_until(
        lambda: (
            len(_ready_gateways(core)) == 3
            and on_bumble.metadata.uid not in {p.metadata.uid for p in _ready_gateways(core)}
        ),
        90,
        "a ready replacement gateway on bumble",
    )


def test_a_restarted_volume_server_never_shares_its_volume_with_its_replacement(
    run_env: dict[str, str], core: client.CoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = "flywheel.lab/member=seaweedfs-volume-bumble"
    claim = core.read_namespaced_persistent_volume_claim(
        "seaweedfs-volume-bumble-data", STATE_NAMESPACE, _request_timeout=5
    )
    assert claim.spec.access_modes == ["ReadWriteOncePod"]
    monkeypatch.setenv("FLYWHEEL_NAMESPACE_ALLOWLIST", STATE_NAMESPACE)
    with holding_lease():
        result = delete_state_authority_pods(namespace=STATE_NAMESPACE, label_selector=member)
    (deleted,) = result["deleted"]
    assert deleted["gone_s"] > 0
    # ReadWriteOnce would let the replacement start while the old pod terminates
    # (the interim posture does: test_experiments); ReadWriteOncePod holds it Pending
    assert result["volume_overlap"] == []
    wait_until(
        lambda: any(
            p.metadata.uid != deleted["uid"]
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in core.list_namespaced_pod(
                STATE_NAMESPACE, label_selector=member, _request_timeout=5
            ).items
        ),
        90,
        "a ready replacement volume server on bumble",
    )
    assert state_authority_serving_within(within_s=60, stable_s=3)["seconds"] < 60


def test_up_on_the_running_lab_with_another_topology_changes_nothing_and_says_so(
    lab: Lab,
) -> None:
    said: list[str] = []
    Lab(LabPaths(lab.paths.root), topology="interim").up(said.append)
    assert said == [
        "the lab is already up with topology ha-seaweedfs; nothing changed "
        "('lab down --clean' first to switch topology)"
    ]
    # without a choice the lab keeps its own topology
    assert Lab(LabPaths(lab.paths.root)).topology == "ha-seaweedfs"


@pytest.mark.parametrize("rustfs", [False, True], ids=["rustfs-not-built", "rustfs-built"])
def test_up_refuses_to_start_another_topology_on_kept_data(tmp_path: Path, rustfs: bool) -> None:
    paths = LabPaths(tmp_path / "kept")
    paths.etcd_data.mkdir(parents=True)
    paths.state.write_text(json.dumps({"topology": "ha", "components": []}))
    lab = Lab(paths, topology="interim")  # interim runs RustFS
    lab.bin = bin_dir_variant(tmp_path / "bin", rustfs)
    with pytest.raises(ConfigError, match="keeps the data of topology 'ha', not 'interim'"):
        lab.up(lambda message: None)
    assert sorted(p.name for p in paths.root.iterdir()) == ["etcd", "lab.lock", "state.json"]


def _disk_listing(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("disk/listing.json")
        assert member is not None
        listing: dict[str, Any] = json.load(member)
        return listing


def test_the_rca_debug_pods_read_each_readwriteoncepod_volume_through_its_node_as_the_lab_sees_it(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = load_authority()
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "lab")
    collect(authority, tmp_path / "lab.tar.gz")
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
    result = collect(authority, tmp_path / "pod.tar.gz")
    by_lab, by_pod = _disk_listing(tmp_path / "lab.tar.gz"), _disk_listing(tmp_path / "pod.tar.gz")
    assert by_pod["collected"] and by_pod["how"] == "debug-pod", result["notes"]
    assert sorted(by_pod["volumes"]) == sorted(by_lab["volumes"])
    # the data volumes are ReadWriteOncePod: one pod per node, in the opt-in namespace,
    # reading each volume through the publish directory of the pod that uses it
    pods = by_pod["debug_pods"]
    assert sorted(p["node"] for p in pods) == ["bumble", "honey", "sting"]
    assert {p["namespace"] for p in pods} == {"flywheel-chaos"}
    paths = [path for p in pods for path in p["volumes"].values()]
    assert paths and all("/volumes/kubernetes.io~csi/" in path for path in paths)
    # what the debug pods listed is what is on the nodes' disks
    assert [e for e in by_pod["entries"] if not _moving(e)] == [
        e for e in by_lab["entries"] if not _moving(e)
    ]
    assert by_pod["bucket_marker_count"] > 0
    # and no debug pod is left behind
    assert not [
        p.metadata.name
        for p in core.list_pod_for_all_namespaces().items
        if (p.metadata.labels or {}).get("flywheel-chaos.io/rca") == "disk-view"
    ]


def _moving(entry: dict[str, Any]) -> bool:
    """Files a running server rewrites between two listings (SeaweedFS's volume indexes)."""
    return not entry["dir"] and str(entry["path"]).rsplit(".", 1)[-1] in ("idx", "dat", "vif")


def test_a_refused_debug_pod_leaves_the_bundle_without_a_disk_view_saying_why(
    run_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
    monkeypatch.setenv("FLYWHEEL_RCA_HELPER_NAMESPACE", "no-such-namespace")
    result = collect(load_authority(), tmp_path / "refused.tar.gz")
    listing = _disk_listing(tmp_path / "refused.tar.gz")
    assert listing["collected"] is False
    assert "was refused: 404" in listing["why"]
    assert "deploy/components/disk-view" in listing["why"]
    assert any("disk view: " in note for note in result["notes"])


def test_the_rca_starts_no_debug_pod_on_a_node_outside_the_allowlist(
    run_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
    monkeypatch.setenv("FLYWHEEL_NODE_ALLOWLIST", "bumble")
    result = collect(load_authority(), tmp_path / "allowlisted.tar.gz")
    listing = _disk_listing(tmp_path / "allowlisted.tar.gz")
    assert [p["node"] for p in listing["debug_pods"]] == ["bumble"]
    assert {v.split(":")[0] for v in listing["volumes"]} == {"bumble"}
    refused = [n for n in result["notes"] if "is not in the node allowlist" in n]
    assert [n.split("no debug pod on ")[1].split(":")[0] for n in refused] == ["honey", "sting"]
