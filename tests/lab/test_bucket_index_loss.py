"""The bucket-index-loss fault in the lab: the incident reproduced, detected, explained, recovered."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from flywheel_chaos.kube.safety import SafetyRefusal
from flywheel_chaos.s3.authority import load_authority
from harness.controls.lease import holding_lease
from harness.lab.cluster import Lab
from harness.lab.faults.bucket_index_loss import _server, lose_bucket_index, remove_scratch_bucket
from harness.lab.faults.index_internals import filer_conf
from harness.record.rca import collect
from tests.support.labkit import chaos_run, cli, s3_client

pytestmark = pytest.mark.lab


def _state_etag(env: dict[str, str]) -> str:
    head = s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
    return str(head["ETag"])


def _buckets(env: dict[str, str]) -> set[str]:
    return {b["Name"] for b in s3_client(env).list_buckets()["Buckets"]}


def _kept(lab: Lab) -> list[Path]:
    return list((lab.paths.root / "nodes").glob("*/volumes/*/flywheel-chaos-index-*"))


def _scratch_rules() -> list[dict[str, Any]]:
    """The location rules of filer.conf, as the lab's filer serves it, that name a scratch bucket."""
    _kind, filer = _server(None)
    return [
        rule
        for rule in filer_conf(filer)["locations"]
        if "flywheel-chaos-index-" in str(rule.get("locationPrefix"))
    ]


def test_the_experiment_catches_the_lost_bucket_explains_it_and_restores_it_byte_identical(
    lab: Lab, run_env: dict[str, str], tmp_path: Path
) -> None:
    etag = _state_etag(run_env)
    buckets = _buckets(run_env)
    record, process = chaos_run("bucket-index-loss", run_env, tmp_path)
    output = process.stdout + process.stderr
    assert record["verdict"] == "passed", (record["reasons"], output[-3000:])
    assert process.returncode == 0
    steps = {step["name"]: step for step in record["proof_steps"]}
    lost = steps["lose-bucket-index"]["output"]
    assert lost["took_effect"] and lost["kept_on_disk"] and lost["server"] == "seaweedfs"
    # even in its scratch bucket the harness writes only under its canary prefix
    assert all(o["key"].startswith("_flywheel-chaos/") for o in lost["objects"])
    guard = steps["guard-reports-no-such-bucket"]["output"]
    assert not guard["guard_passed"]
    assert "no-such-bucket" in {f["class"] for f in guard["failed"]}
    restored = steps["restore-from-backup"]["output"]["restored"]
    assert len(restored) == len(lost["objects"])
    assert all(r["identical"] and r["path"] == "backup" for r in restored)
    assert {r["sha256"] for r in restored} == {o["sha256"] for o in lost["objects"]}
    # the bundle taken while the fault was live: S3 says no bucket, the disk has its data
    assert record["rca"]["mismatch"] is True
    bundle = Path(run_env["FLYWHEEL_EVIDENCE_DIR"]) / record["rca"]["file"]
    with tarfile.open(bundle) as tar:
        summary = tar.extractfile("rca.md").read().decode()  # type: ignore[union-attr]
        disk = json.loads(tar.extractfile("disk/listing.json").read())  # type: ignore[union-attr]
    assert "Mismatch: NoSuchBucket from S3; bucket markers present on disk" in summary
    assert any("-kept_" in marker for marker in disk["bucket_markers"])
    assert cli(["evidence", "verify"], run_env).returncode == 0
    # nothing of it is left, and the state was never touched
    assert record["rollbacks"] == [{"name": "remove-scratch-bucket", "status": "succeeded"}]
    assert _buckets(run_env) == buckets
    assert not _kept(lab)
    assert _state_etag(run_env) == etag
    assert record["integrity"]["state_key_unchanged"] is True
    listing = s3_client(run_env).list_object_versions(
        Bucket=run_env["TOFU_STATE_BACKUP_BUCKET"], Prefix="_flywheel-chaos/index-loss/"
    )
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")
    assert _scratch_rules() == []


def test_the_guard_command_exits_1_with_no_such_bucket_while_the_index_is_lost(
    lab: Lab, run_env: dict[str, str]
) -> None:
    etag = _state_etag(run_env)
    with holding_lease():
        lost = lose_bucket_index(objects=2, size_bytes=4096)
        try:
            guard = cli(
                ["guard", "--bucket", lost["bucket"], "--key", lost["objects"][0]["key"]], run_env
            )
            assert guard.returncode == 1, guard.stdout + guard.stderr
            assert "no-such-bucket" in guard.stdout + guard.stderr
        finally:
            cleaned = remove_scratch_bucket()
    assert cleaned["kept_left_on_disk"] == []
    assert lost["bucket"] not in _buckets(run_env)
    assert _state_etag(run_env) == etag
    assert _scratch_rules() == []


def test_it_is_refused_outside_a_lab_and_on_the_state_bucket_before_anything_changes(
    run_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buckets = _buckets(run_env)
    with holding_lease():
        with pytest.raises(SafetyRefusal, match="is the state authority's own bucket"):
            lose_bucket_index(bucket=run_env["TOFU_STATE_BUCKET"])
        with pytest.raises(SafetyRefusal, match="is the state authority's own bucket"):
            lose_bucket_index(bucket=run_env["TOFU_STATE_BACKUP_BUCKET"])
        with pytest.raises(SafetyRefusal, match="is not a scratch bucket"):
            lose_bucket_index(bucket="someones-bucket")
        monkeypatch.setenv("FLYWHEEL_LAB_DIR", str(tmp_path / "not-a-lab"))
        with pytest.raises(SafetyRefusal, match="runs only in a lab"):
            lose_bucket_index()
        monkeypatch.delenv("FLYWHEEL_LAB_DIR")
        with pytest.raises(SafetyRefusal, match="runs only in a lab"):
            lose_bucket_index()
    assert _buckets(run_env) == buckets


def test_with_the_debug_pod_the_rca_finds_the_lost_buckets_data_through_the_servers_node(
    lab: Lab, run_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
    with holding_lease():
        lost = lose_bucket_index(objects=2, size_bytes=4096)
        try:
            scratch = load_authority().with_overrides(bucket=lost["bucket"], key="")
            bundle = collect(scratch, tmp_path / "rca.tar.gz")
        finally:
            remove_scratch_bucket()
    assert bundle["mismatch"] is True, bundle["notes"]
    with tarfile.open(tmp_path / "rca.tar.gz") as tar:
        disk = json.loads(tar.extractfile("disk/listing.json").read())  # type: ignore[union-attr]
    # the server uses its claim: read through bumble's copy (the server pod's publish
    # directory), from the opt-in namespace, never mounted a second time
    assert disk["how"] == "debug-pod"
    assert [(p["namespace"], p["node"]) for p in disk["debug_pods"]] == [
        ("flywheel-chaos", "bumble")
    ]
    paths = [v for p in disk["debug_pods"] for v in p["volumes"].values()]
    assert paths and all("/volumes/kubernetes.io~csi/" in v for v in paths)
    assert any("-kept_" in marker for marker in disk["bucket_markers"])
