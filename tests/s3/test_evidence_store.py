"""The evidence store on a real S3 server: truncation, rewrites and outages are never silent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.lab.seaweed import SeaweedS3
from harness.record.evidence import canonical, new_record, record_files, self_hash, sha256
from harness.record.recorder import record
from tests.support.netfaults import closed_port_endpoint
from tests.support.s3kit import empty_and_delete_bucket

pytestmark = pytest.mark.s3


@pytest.fixture
def store_env(
    seaweed: SeaweedS3, s3_admin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A versioned evidence bucket on the test server, configured through the environment."""
    bucket = f"ev-{uuid.uuid4().hex[:10]}"
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    env = {
        "FLYWHEEL_EVIDENCE_URL": f"s3://{bucket}/lab",
        "FLYWHEEL_EVIDENCE_ENDPOINT_URL": seaweed.endpoint,
        "FLYWHEEL_EVIDENCE_ACCESS_KEY_ID": seaweed.access_key,
        "FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY": seaweed.secret_key,
        "FLYWHEEL_EVIDENCE_DIR": str(tmp_path / "evidence"),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FLYWHEEL_EVIDENCE_SIGNING_KEY", raising=False)
    yield {**env, "bucket": bucket}
    empty_and_delete_bucket(s3_admin, bucket)


def _record_runs(directory: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        written = record(
            new_record(fault="pod-delete", verdict="survived", reasons=[f"run {i}"]),
            journal={"status": "completed", "n": i},
            directory=directory,
        )
        assert written.published, written.store
        paths.append(written.path)
    return paths


def _verify(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["evidence", "--dir", str(directory), "verify"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("which", ["newest", "middle", "all-but-first"])
def test_deleting_records_is_detected_against_the_store(
    store_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    directory = tmp_path / "evidence"
    paths = _record_runs(directory, 4)
    assert _verify(directory, capsys)[0] == 0
    gone = {"newest": paths[-1:], "middle": paths[1:2], "all-but-first": paths[1:]}[which]
    for path in gone:
        path.unlink()
        path.with_name(path.name.replace(".json", ".journal.json")).unlink()
    code, output = _verify(directory, capsys)
    assert code == 1
    for path in gone:
        assert f"missing: {path.name}" in output


def test_a_rewritten_and_rehashed_record_is_named_altered(
    store_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "evidence"
    paths = _record_runs(directory, 2)
    forged = json.loads(paths[0].read_text())
    forged["verdict"] = "not-survived"
    forged["record_sha256"] = self_hash(forged)
    paths[0].write_bytes(canonical(forged))
    later = json.loads(paths[1].read_text())
    later["previous_sha256"] = sha256(paths[0].read_bytes())
    later["record_sha256"] = self_hash(later)
    paths[1].write_bytes(canonical(later))
    code, output = _verify(directory, capsys)
    assert code == 1
    assert f"altered: {paths[0].name}" in output and f"altered: {paths[1].name}" in output


def test_an_unreachable_store_keeps_the_record_and_push_publishes_it_later(
    store_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "evidence"
    _record_runs(directory, 1)
    monkeypatch.setenv("FLYWHEEL_EVIDENCE_ENDPOINT_URL", closed_port_endpoint())
    written = record(
        new_record(fault="pod-delete", verdict="survived"), journal={}, directory=directory
    )
    assert written.path.exists() and not written.published
    assert written.store and "NOT published" in written.store and "evidence push" in written.store
    monkeypatch.setenv(
        "FLYWHEEL_EVIDENCE_ENDPOINT_URL", store_env["FLYWHEEL_EVIDENCE_ENDPOINT_URL"]
    )
    code, output = _verify(directory, capsys)
    assert code == 1 and f"extra: {written.path.name}" in output
    assert main(["evidence", "--dir", str(directory), "push"]) == 0
    assert _verify(directory, capsys)[0] == 0
    assert len(record_files(directory)) == 2


def test_pull_brings_back_deleted_records(
    store_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "evidence"
    paths = _record_runs(directory, 3)
    paths[-1].unlink()
    assert main(["evidence", "--dir", str(directory), "pull"]) == 0
    assert _verify(directory, capsys)[0] == 0


def test_an_unversioned_store_is_refused(
    store_env: dict[str, str], s3_admin: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_admin.put_bucket_versioning(
        Bucket=store_env["bucket"], VersioningConfiguration={"Status": "Suspended"}
    )
    written = record(
        new_record(fault="guard", kind="guard", verdict="passed"), directory=tmp_path / "e"
    )
    assert not written.published and "versioning" in str(written.store)


def test_the_state_bucket_is_refused_as_the_store(
    store_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOFU_STATE_BUCKET", "tofu-state")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", store_env["FLYWHEEL_EVIDENCE_ENDPOINT_URL"])
    monkeypatch.setenv("FLYWHEEL_EVIDENCE_URL", "s3://tofu-state/evidence")
    assert main(["evidence", "--dir", str(tmp_path), "push"]) == 2
    error = capsys.readouterr().err
    assert "is the state bucket itself" in error and "survive the outage" in error


def test_a_store_rolled_back_without_the_key_is_named(
    store_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    s3_admin: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.record.signing import generate

    private, public = generate(tmp_path / "keys")
    monkeypatch.setenv("FLYWHEEL_EVIDENCE_SIGNING_KEY", str(private))
    directory = tmp_path / "evidence"
    paths = _record_runs(directory, 3)
    bucket, prefix = store_env["bucket"], "lab"
    # the attacker: delete the newest (not-survived, say) record from directory and store,
    # then put the previous, validly signed HEAD.json version back
    newest = paths[-1]
    for path in (newest, newest.with_name(newest.name.replace(".json", ".journal.json"))):
        path.unlink()
        s3_admin.delete_object(Bucket=bucket, Key=f"{prefix}/records/{path.name}")
    versions = s3_admin.list_object_versions(Bucket=bucket, Prefix=f"{prefix}/HEAD.json")
    previous = versions["Versions"][1]  # newest first: the head before the deleted record's
    s3_admin.copy_object(
        Bucket=bucket,
        Key=f"{prefix}/HEAD.json",
        CopySource={"Bucket": bucket, "Key": f"{prefix}/HEAD.json", "VersionId": previous["VersionId"]},
    )  # fmt: skip
    capsys.readouterr()
    code = main(["evidence", "--dir", str(directory), "verify", "--public-key", str(public)])
    output = capsys.readouterr().out
    assert code == 1
    assert f"deleted: {newest.name} was deleted from the store" in output
    assert "head rolled back: the current head's sequence is 2, the store once had 3" in output
