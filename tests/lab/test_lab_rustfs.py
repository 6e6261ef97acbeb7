"""The real RustFS in the lab: the interim authority as production runs it.

These need RustFS 1.0.1 built (``flywheel-chaos lab build --rustfs``, about an
hour on 2 cores); without it they are skipped and say so. What RustFS does under
each fault, over repeated runs, is measured by ``benchmarks/ha_candidate.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from kubernetes import client

from harness.controls.lease import holding_lease
from harness.lab.build import rustfs_built
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.lab.faults.bucket_index_loss import (
    lose_bucket_index,
    remove_scratch_bucket,
    restore_bucket_from_backup,
)
from harness.processes import wait_until
from probes.state_authority import state_authority_serving_within
from tests.support.labkit import chaos_run, s3_client

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        not rustfs_built(), reason="RustFS is not built: flywheel-chaos lab build --rustfs"
    ),
]
TOPOLOGY = "interim"


def _run(experiment: str, env: dict[str, str], tmp_path: Path) -> tuple[dict[str, Any], str]:
    record, process = chaos_run(experiment.removesuffix(".yaml"), env, tmp_path)
    return record, process.stdout + process.stderr


def test_the_interim_authority_is_rustfs_serving_s3_from_its_own_readiness_endpoint(
    lab: Lab, core: client.CoreV1Api
) -> None:
    (pod,) = core.list_namespaced_pod(STATE_NAMESPACE).items
    container = pod.spec.containers[0]
    assert container.command == ["rustfs"]
    assert container.readiness_probe.http_get.path == "/health/ready"
    assert "@sha256:" in container.image
    log = next(lab.paths.node_dir("bumble").glob("pods/*/rustfs.log")).read_text()
    assert "version.rustfs.com" not in log  # the update check is off


def test_a_pod_restart_keeps_the_data_and_measures_the_volume_overlap(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    key = "_flywheel-chaos/test/rustfs-restart"
    body = os.urandom(2048)
    s3_client(run_env).put_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key, Body=body)
    record, output = _run("pod-delete.yaml", run_env, tmp_path)
    assert record["fault_effect"]["took_effect"] is True, output[-2000:]
    overlaps = [o for a in record["fault_actions"] for o in a.get("volume_overlap", [])]
    # measured, not assumed: a Deployment's replacement on a ReadWriteOnce claim
    if overlaps:
        assert record["verdict"] == "not-survived"
        assert {o["claim"] for o in overlaps} == {"attic-rustfs-openebs-data"}
    assert record["integrity"]["state_key_unchanged"] is True
    state_authority_serving_within(within_s=120)
    data = s3_client(run_env).get_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key)["Body"]
    assert data.read() == body
    s3_client(run_env).delete_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key)


def test_a_drain_leaves_the_replacement_pending_on_the_bumble_bound_volume(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    record, output = _run("node-drain.yaml", run_env, tmp_path)
    assert record["verdict"] == "not-survived", output[-2000:]
    assert record["prober"]["longest_outage_ms"] > 30_000
    events = core.list_namespaced_event(STATE_NAMESPACE).items
    assert any(
        e.reason == "FailedScheduling" and "node affinity" in (e.message or "") for e in events
    )
    wait_until(lambda: not core.read_node("bumble").spec.unschedulable, 10, "bumble uncordoned")
    state_authority_serving_within(within_s=120)


def _scratch_on_disk(lab: Lab) -> list[Path]:
    """Anything of a bucket-index-loss scratch bucket on the lab's RustFS drives."""
    volumes = lab.paths.root / "nodes"
    return [
        *volumes.glob("*/volumes/*/flywheel-chaos-index-*"),
        *volumes.glob("*/volumes/*/.flywheel-chaos-kept-*"),
        *volumes.glob("*/volumes/*/.rustfs.sys/buckets/flywheel-chaos-index-*"),
    ]


def test_bucket_index_loss_on_rustfs_answers_no_such_bucket_with_markers_on_disk_and_restores(
    lab: Lab, run_env: dict[str, str], tmp_path: Path
) -> None:
    etag = s3_client(run_env).head_object(
        Bucket=run_env["TOFU_STATE_BUCKET"], Key=run_env["TOFU_STATE_KEY"]
    )["ETag"]
    record, output = _run("bucket-index-loss.yaml", run_env, tmp_path)
    assert record["verdict"] == "passed", (record["reasons"], output[-3000:])
    steps = {step["name"]: step["output"] for step in record["proof_steps"]}
    lost = steps["lose-bucket-index"]
    assert lost["server"] == "rustfs" and lost["took_effect"]
    assert all("/.flywheel-chaos-kept-" in path for path in lost["kept_on_disk"])
    assert [m.split("/.rustfs.sys/")[1] for m in lost["markers_on_disk"]] == [
        f"buckets/{lost['bucket']}"
    ]
    restored = steps["restore-from-backup"]["restored"]
    assert {r["sha256"] for r in restored} == {o["sha256"] for o in lost["objects"]}
    assert all(r["identical"] and r["path"] == "backup" for r in restored)
    assert record["rca"]["mismatch"] is True
    assert record["rollbacks"] == [{"name": "remove-scratch-bucket", "status": "succeeded"}]
    assert _scratch_on_disk(lab) == []
    assert record["integrity"]["state_key_unchanged"] is True
    assert (
        s3_client(run_env).head_object(
            Bucket=run_env["TOFU_STATE_BUCKET"], Key=run_env["TOFU_STATE_KEY"]
        )["ETag"]
        == etag
    )


def test_after_a_restart_rustfs_refuses_create_bucket_and_the_restore_puts_the_directory_back(
    lab: Lab, run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    with holding_lease():
        lost = lose_bucket_index(objects=2, size_bytes=4096)
        try:
            (pod,) = core.list_namespaced_pod(STATE_NAMESPACE).items
            core.delete_namespaced_pod(pod.metadata.name, STATE_NAMESPACE)
            wait_until(
                lambda: (
                    [
                        p.metadata.name
                        for p in core.list_namespaced_pod(STATE_NAMESPACE).items
                        if p.metadata.name != pod.metadata.name
                    ]
                    and not any(
                        p.metadata.name == pod.metadata.name
                        for p in core.list_namespaced_pod(STATE_NAMESPACE).items
                    )
                ),
                60,
                "the restarted RustFS pod replaced the old one",
            )
            state_authority_serving_within(within_s=120)
            # a restart heals nothing: still NoSuchBucket, the metadata still on disk
            with pytest.raises(ClientError) as missing:
                s3_client(run_env).head_bucket(Bucket=lost["bucket"])
            assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            restored = restore_bucket_from_backup()
        finally:
            cleaned = remove_scratch_bucket()
    assert restored["index_repair"]["create_bucket"] == "NoSuchBucket"
    assert [d.rsplit("/", 1)[1] for d in restored["index_repair"]["directories"]] == [
        lost["bucket"]
    ]
    assert {r["sha256"] for r in restored["restored"]} == {o["sha256"] for o in lost["objects"]}
    assert cleaned["kept_left_on_disk"] == []
    assert _scratch_on_disk(lab) == []
