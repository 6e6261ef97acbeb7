"""Evidence records: schema, chain, tamper evidence, redaction and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from harness.cli import main
from harness.record.evidence import new_record, record_files, verify, write_record

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


def test_a_record_that_breaks_the_schema_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(jsonschema.ValidationError):
        write_record(new_record(fault="pod-delete", verdict="maybe"), tmp_path)
    assert record_files(tmp_path) == []


def test_secrets_never_reach_a_record_or_a_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
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
