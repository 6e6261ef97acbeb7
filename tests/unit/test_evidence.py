"""Evidence records: schema, chain, tamper evidence, redaction and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.record.evidence import (
    RecordRejected,
    new_record,
    record_files,
    verify,
    write_record,
)
from harness.record.redact import Redactor, known_secrets
from harness.record.signing import generate, load_signer, load_verifier

SECRET = "s3cr3t-VALUE-never-written-7f3a"


def _write(directory: Path, n: int, **extra: object) -> list[Path]:
    paths = []
    for i in range(n):
        record = new_record(fault="pod-delete", verdict="survived", reasons=[f"run {i}"], **extra)
        paths.append(write_record(record, directory, journal={"status": "completed", "n": i}))
    return paths


def test_records_chain_and_verify(tmp_path: Path) -> None:
    paths = _write(tmp_path, 3)
    assert record_files(tmp_path) == paths
    results = verify(tmp_path)
    assert [r.ok for r in results] == [True, True, True]
    records = [json.loads(p.read_text()) for p in paths]
    assert records[0]["previous_sha256"] is None
    assert records[1]["previous_sha256"] and records[2]["previous_sha256"]


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("where", ["verdict", "whitespace", "last-byte"])
def test_editing_any_byte_of_any_record_is_detected(tmp_path: Path, index: int, where: str) -> None:
    paths = _write(tmp_path, 3)
    target = paths[index]
    data = target.read_bytes()
    if where == "verdict":
        data = data.replace(b'"survived"', b'"survivee"', 1)
    elif where == "whitespace":
        data = data.replace(b"\n  ", b"\n   ", 1)
    else:
        data = data[:-1] + b" "
    target.write_bytes(data)
    bad = [r for r in verify(tmp_path) if not r.ok]
    assert target in [r.path for r in bad]


def test_a_tampered_journal_copy_is_detected(tmp_path: Path) -> None:
    _write(tmp_path, 2)
    journal = sorted(tmp_path.glob("*.journal.json"))[0]
    journal.write_text(journal.read_text().replace("completed", "COMPLETED"))
    bad = [r for r in verify(tmp_path) if not r.ok]
    assert len(bad) == 1 and "journal copy" in bad[0].problems[0]


def test_a_record_that_breaks_the_schema_is_rejected_with_its_reason_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 1)
    with pytest.raises(RecordRejected) as rejected:
        write_record(
            new_record(fault="pod-delete", verdict="maybe"), tmp_path, journal={"status": "x"}
        )
    assert len(record_files(tmp_path)) == 1  # the chain is untouched
    assert len(list(tmp_path.glob("*.journal.json"))) == 1  # no orphan journal in the chain
    kept = json.loads(rejected.value.path.read_text())
    assert kept["record"]["verdict"] == "maybe"
    assert "'maybe' is not one of" in kept["rejected_because"]
    assert (
        rejected.value.path.parent / rejected.value.path.name.replace(".json", ".journal.json")
    ).exists()
    assert all(r.ok for r in verify(tmp_path))


def test_secrets_never_reach_a_record_or_a_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    record = new_record(fault="pod-delete", verdict="survived", reasons=[f"endpoint said {SECRET}"])
    journal = {
        "experiment": {
            "secrets": {"s3": {"aws_secret_access_key": SECRET}},
            "configuration": {"aws_secret_access_key": SECRET, "other": f"x{SECRET}y"},
        },
        "run": [{"output": {"message": f"token={SECRET}"}}],
    }
    write_record(record, tmp_path, journal=journal)
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(errors="replace"), path.name
    assert all(r.ok for r in verify(tmp_path))


def test_evidence_verify_exits_1_naming_the_tampered_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _write(tmp_path, 2)
    assert main(["evidence", "--dir", str(tmp_path), "verify"]) == 0
    paths[0].write_bytes(paths[0].read_bytes().replace(b"run 0", b"run 9"))
    assert main(["evidence", "--dir", str(tmp_path), "verify"]) == 1
    assert paths[0].name in capsys.readouterr().out


def test_evidence_commands_run_as_an_operator_runs_them(tmp_path: Path) -> None:
    _write(tmp_path, 1)
    env = {**os.environ, "FLYWHEEL_EVIDENCE_DIR": str(tmp_path)}
    cli = [sys.executable, "-m", "harness.cli"]
    listing = subprocess.run(
        [*cli, "evidence", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and json.loads(listing.stdout)[0]["verdict"] == "survived"
    shown = subprocess.run(
        [*cli, "evidence", "show", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(shown.stdout)["fault"] == "pod-delete"
    missing = subprocess.run(
        [*cli, "evidence", "show", "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: no evidence record 'nope'")


PLANTED = "Pl4nted-s3cret-Zq9"


def _every_file(directory: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "where",
    [
        "experiment-secrets",
        "credentials-mapping",
        "url-userinfo",
        "exception",
        "number",
        "profile",
        "kubeconfig",
    ],
)
def test_each_way_a_secret_can_arrive_is_redacted_from_records_and_journals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    evidence = tmp_path / "evidence"
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    secrets: dict[str, object] = {}
    journal: dict[str, object] = {"status": "completed"}
    if where == "experiment-secrets":
        secrets = {"s3": {"some_value": PLANTED}}
        journal["run"] = [{"output": {"message": f"got {PLANTED} back"}}]
    elif where == "credentials-mapping":
        journal["configuration"] = {
            "credentials": {"user": "ops", "pw": PLANTED},
            "client-key-data": PLANTED,
            "apikey": PLANTED,
            "private-key": PLANTED,
        }
    elif where == "url-userinfo":
        journal["configuration"] = {"endpoint": f"https://AKIAEXAMPLE:{PLANTED}@s3.example"}
    elif where == "exception":
        journal["run"] = [
            {
                "exception": [
                    f"Traceback...\nActivityFailed: cannot connect to https://u:{PLANTED}@h (token={PLANTED})"
                ]
            }
        ]
        secrets = {"token": PLANTED}
    elif where == "number":
        secrets = {"pin": 73519046}
        journal["configuration"] = {"retries": 73519046}
    elif where == "profile":
        (tmp_path / "aws-credentials").write_text(
            f"[ops]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = {PLANTED}\n"
        )
        journal["run"] = [{"output": f"signed with {PLANTED}"}]
    elif where == "kubeconfig":
        (tmp_path / "kubeconfig").write_text(f"users:\n- name: u\n  user:\n    token: {PLANTED}\n")
        journal["run"] = [{"output": f"bearer {PLANTED}"}]
    redactor = Redactor(known_secrets(secrets))
    record = new_record(fault="pod-delete", verdict="survived", reasons=[str(journal)])
    write_record(record, evidence, journal=journal, redactor=redactor)
    text = _every_file(evidence)
    assert PLANTED not in text and "73519046" not in text
    assert "***" in text
    assert all(r.ok for r in verify(evidence))


def test_signed_records_verify_and_any_rewritten_byte_fails_the_signature(tmp_path: Path) -> None:
    private, public = generate(tmp_path / "keys")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    signer, verifier = load_signer(str(private)), load_verifier(public)
    paths = [
        write_record(
            new_record(fault="pod-delete", verdict="survived", reasons=[f"run {i}"]),
            tmp_path / "ev",
            signer=signer,
        )
        for i in range(3)
    ]
    assert all(r.ok for r in verify(tmp_path / "ev", verifier))
    # rewrite one record and re-hash it (and the chain) by hand: only the signature tells
    record = json.loads(paths[1].read_text())
    record["verdict"] = "not-survived"
    from harness.record.evidence import canonical, self_hash, sha256

    record["record_sha256"] = self_hash(record)
    paths[1].write_bytes(canonical(record))
    later = json.loads(paths[2].read_text())
    later["previous_sha256"] = sha256(paths[1].read_bytes())
    later["record_sha256"] = self_hash(later)
    paths[2].write_bytes(canonical(later))
    assert all(r.ok for r in verify(tmp_path / "ev"))  # without the key the forgery holds
    bad = {r.path.name: r.problems for r in verify(tmp_path / "ev", verifier) if not r.ok}
    # the rewritten record, and the later one whose chain link was re-hashed
    assert bad == {p.name: ["signature: signature does not match"] for p in paths[1:]}


def test_without_a_store_verify_says_that_truncation_cannot_be_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLYWHEEL_EVIDENCE_URL", raising=False)
    paths = _write(tmp_path, 3)
    paths[-1].unlink()
    assert main(["evidence", "--dir", str(tmp_path), "verify"]) == 0
    assert "cannot detect" in capsys.readouterr().out


def test_the_rca_disk_view_counts_a_buckets_own_files_not_those_of_a_bucket_sharing_its_prefix(
    tmp_path: Path,
) -> None:
    from harness.record.rca_disk import disk_view as _disk_view

    volume = tmp_path / "nodes" / "bumble" / "volumes" / "pv-1"
    (volume / "tofu-state").mkdir(parents=True)
    for name in ("tofu-state_3.dat", "tofu-state-kept_4.idx", "tofu-state-backup_5.dat", "7.dat"):
        (volume / name).write_bytes(b"x")
    view = _disk_view(
        "lab", str(tmp_path), "nix-cache", {"volumes": [{"name": "pv-1"}]}, {}, "tofu-state", 60.0
    )
    assert view["collected"] and view["volumes"] == ["bumble:pv-1"]
    assert sorted(m.split("/", 1)[1] for m in view["bucket_markers"]) == [
        "tofu-state",
        "tofu-state-kept_4.idx",
        "tofu-state_3.dat",
    ]


def test_the_rca_disk_view_is_off_on_a_real_cluster_unless_opted_in_and_refuses_an_unknown_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.record.rca_disk import disk_view as _disk_view
    from harness.record.rca_disk import disk_view_mode

    monkeypatch.delenv("FLYWHEEL_RCA_DISK_VIEW", raising=False)
    assert disk_view_mode("") == "off"
    assert disk_view_mode("/some/lab") == "lab"
    view = _disk_view("off", "", "nix-cache", {}, {}, "tofu-state", 60.0)
    assert not view["collected"] and "FLYWHEEL_RCA_DISK_VIEW=debug-pod" in view["why"]
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "debug-pod")
    assert disk_view_mode("") == "debug-pod"
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "lab")
    with pytest.raises(ValueError, match="needs a lab"):
        disk_view_mode("")
    monkeypatch.setenv("FLYWHEEL_RCA_DISK_VIEW", "sideways")
    with pytest.raises(
        ValueError,
        match="'sideways' \\(FLYWHEEL_RCA_DISK_VIEW\\) is not one of auto, lab, debug-pod, off",
    ):
        disk_view_mode("")


def test_a_schema_keyword_the_fast_path_reads_differently_leaves_the_judgement_to_jsonschema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.record import evidence

    # unevaluatedProperties is 2020-12 only: compiled as draft-07 it would be ignored and
    # the extra property accepted
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "unevaluatedProperties": False,
    }
    monkeypatch.setattr(evidence, "_schema", lambda name: schema)
    evidence._compiled.cache_clear()
    evidence._validator.cache_clear()
    try:
        assert evidence._compiled("test") is None
        evidence.validate({"id": "a"}, "test")
        with pytest.raises(evidence.SchemaViolation, match="Unevaluated properties"):
            evidence.validate({"id": "a", "extra": 1}, "test")
    finally:
        evidence._compiled.cache_clear()
        evidence._validator.cache_clear()


def test_the_shipped_record_schemas_take_the_fast_path() -> None:
    from harness.record import evidence

    for name in evidence.SCHEMA_FILES:
        assert evidence._foreign_keywords(evidence._schema(name)) == set(), name
        assert evidence._compiled(name) is not None


def test_without_the_cluster_steps_objects_the_debug_pod_view_starts_nothing_and_says_why() -> None:
    from harness.record.rca_disk import disk_view as _disk_view

    view = _disk_view("debug-pod", "", "nix-cache", {}, {"pods": []}, "tofu-state", 60.0)
    assert view["collected"] is False and view["debug_pods"] == []
    assert "did not read the claims, volumes, nodes it needs" in view["why"]


def test_a_pod_s_projected_token_request_teaches_the_redactor_nothing_that_would_mask_a_digest(
    tmp_path: Path,
) -> None:
    # seen: a record rejected because "3607" (the default projected token's expirationSeconds)
    # had been learnt as a secret and masked inside the RCA bundle's SHA-256
    pod = {
        "spec": {
            "automountServiceAccountToken": True,
            "volumes": [
                {
                    "name": "kube-api-access",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        ]
                    },
                },
                {"name": "creds", "secret": {"secretName": "state-credentials"}},
            ],
            "containers": [
                {
                    "env": [
                        {
                            "name": "AWS_SECRET_ACCESS_KEY",
                            "valueFrom": {"secretKeyRef": {"name": "state-credentials"}},
                        },
                        {"name": "x", "value": "y", "password": PLANTED, "pin": 4242},
                    ]
                }
            ],
        }
    }
    redactor = Redactor([])
    bundle = redactor.document(pod)
    digest = "1a95ab8dcb70ab00467c4fc2423607df2a0dbbfc0c2fccd4de43a60e4a67eb9f"
    text = f"rca sha256 {digest}, token path, took 4242 ms, {PLANTED} again"
    assert redactor.text(text) == f"rca sha256 {digest}, token path, took 4242 ms, *** again"
    assert redactor.document({"outage_ms": 3607, "n": 4242}) == {"outage_ms": 3607, "n": 4242}
    # replaced in place all the same: what the bundle shows under a secret-named key goes
    source = bundle["spec"]["volumes"][0]["projected"]["sources"][0]
    assert source["serviceAccountToken"] == {"expirationSeconds": "***", "path": "***"}
    assert bundle["spec"]["containers"][0]["env"][1]["password"] == "***"


def test_a_target_read_that_overruns_its_wait_leaves_the_fingerprint_unknown_not_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from harness.controls import current_run
    from harness.controls import evidence as control

    release = threading.Event()

    def stuck(into: dict[str, object], *args: object) -> None:
        release.wait(5)
        into["fingerprint"] = {"endpoint": "read too late"}

    monkeypatch.setattr(control, "_read_before", stuck)
    monkeypatch.setattr(control, "BEFORE_WAIT_S", 0.2)
    run = current_run(reset=True)
    try:
        control.before_experiment_control({}, fault="pod-delete")
        control.before_method_control({})
        assert run.fingerprint is not None and "not read within 0.2 s" in run.fingerprint["error"]
        assert run.integrity_before is not None and run.integrity_before["ok"] is False
        release.set()
        time.sleep(0.1)
        control.before_method_control({})  # a second wait finds nothing left to join
        assert "error" in run.fingerprint  # the late read never lands in the run
    finally:
        release.set()
        control._remove_redaction()
        current_run(reset=True)
