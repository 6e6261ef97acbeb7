"""``flywheel-chaos guard`` as an operator runs it: exit codes, JSON, backend config, no side effects."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flywheel_chaos.s3.authority import CANARY_PREFIX
from harness.cli import main
from harness.lab.seaweed import SeaweedS3
from tests.support.netfaults import closed_port_endpoint
from tests.support.s3kit import GUARD_CHECK_NAMES, REPO, STATE_KEY, subprocess_env

pytestmark = pytest.mark.s3

CLI = [sys.executable, "-m", "harness.cli"]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def _snapshot(client: Any, bucket: str) -> dict[tuple[str, str], str]:
    listing = client.list_object_versions(Bucket=bucket)
    return {
        (v["Key"], v["VersionId"]): v["ETag"]
        for v in listing.get("Versions", [])
        if not v["Key"].startswith(CANARY_PREFIX)
    } | {
        (m["Key"], m["VersionId"]): "delete-marker"
        for m in listing.get("DeleteMarkers", [])
        if not m["Key"].startswith(CANARY_PREFIX)
    }


def test_guard_passes_with_json_and_touches_nothing_outside_the_canary_prefix(
    authority_env: dict[str, str], s3_admin: Any, state_bucket: str
) -> None:
    s3_admin.put_object(Bucket=state_bucket, Key="env/other/terraform.tfstate", Body=b"{}")
    before = _snapshot(s3_admin, state_bucket)
    etag_before = s3_admin.head_object(Bucket=state_bucket, Key=STATE_KEY)["ETag"]
    result = _run(["guard", "--json"], authority_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == GUARD_CHECK_NAMES
    assert all(set(c) >= {"name", "ok", "duration_ms", "error"} for c in report["checks"])
    assert _snapshot(s3_admin, state_bucket) == before
    assert s3_admin.head_object(Bucket=state_bucket, Key=STATE_KEY)["ETag"] == etag_before
    listing = s3_admin.list_object_versions(Bucket=state_bucket, Prefix=CANARY_PREFIX)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")


def test_guard_output_never_contains_the_secret(authority_env: dict[str, str]) -> None:
    for args in (["guard"], ["guard", "--json"], ["guard", "--debug", "--key", "missing/key"]):
        result = _run(args, authority_env)
        assert authority_env["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr


def test_guard_fails_closed_with_exit_1_on_a_missing_state_key(
    authority_env: dict[str, str],
) -> None:
    result = _run(["guard", "--json", "--key", "env/absent/terraform.tfstate"], authority_env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["state-key-head"]
    assert failed[0]["error"]["class"] == "no-such-key"


def test_guard_against_a_closed_port_fails_fast_with_exit_1(
    authority_env: dict[str, str],
) -> None:
    env = dict(authority_env, AWS_ENDPOINT_URL_S3=closed_port_endpoint())
    started = time.monotonic()
    result = _run(["guard", "--json"], env)
    assert result.returncode == 1
    assert {c["error"]["class"] for c in json.loads(result.stdout)["checks"]} == {
        "endpoint-unreachable"
    }
    assert time.monotonic() - started < 10


def test_guard_without_an_endpoint_is_a_configuration_error_with_a_hint(
    authority_env: dict[str, str],
) -> None:
    env = {k: v for k, v in authority_env.items() if k != "AWS_ENDPOINT_URL_S3"}
    result = _run(["guard"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: no S3 endpoint configured"
    assert lines[1].startswith("hint: set AWS_ENDPOINT_URL_S3")
    assert "Traceback" not in result.stderr


def test_guard_without_credentials_is_a_configuration_error(
    authority_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in authority_env.items() if not k.startswith("AWS_SECRET")}
    env.pop("AWS_ACCESS_KEY_ID")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    result = _run(["guard"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no S3 credentials found")


def test_guard_reads_an_opentofu_backend_file(
    authority_env: dict[str, str],
    seaweed: SeaweedS3,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = tmp_path / "backend.s3.tfbackend"
    backend.write_text(
        f'bucket = "{authority_env["TOFU_STATE_BUCKET"]}"\n'
        f'key    = "{STATE_KEY}"\n'
        'region = "us-east-1"\n'
        f'endpoints = {{ s3 = "{seaweed.endpoint}" }}\n'
        "use_path_style = true\n"
        "use_lockfile = true\n"
        "skip_credentials_validation = true\n"
    )
    # the environment points elsewhere: the file must win
    env = dict(authority_env, AWS_ENDPOINT_URL_S3=closed_port_endpoint(), TOFU_STATE_KEY="wrong")
    result = _run(["guard", "--json", "--backend-config", str(backend)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["target"]["endpoint"] == seaweed.endpoint
    assert report["target"]["key"] == STATE_KEY


def test_guard_reads_a_terraform_block_with_an_s3_backend(
    authority_env: dict[str, str], seaweed: SeaweedS3, tmp_path: Path
) -> None:
    tf = tmp_path / "backend.tf"
    tf.write_text(
        'terraform {\n  backend "s3" {\n'
        f'    bucket = "{authority_env["TOFU_STATE_BUCKET"]}"\n'
        f'    key = "{STATE_KEY}"\n'
        f'    endpoints = {{ s3 = "{seaweed.endpoint}" }}\n'
        "    use_path_style = true\n  }\n}\n"
    )
    result = _run(["guard", "--json", "--backend-config", str(tf)], authority_env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        ('bucket = "x"\nkey = ', "is not valid HCL"),
        ('terraform {\n backend "gcs" {\n bucket = "x"\n }\n}\n', "backend is 'gcs', not \"s3\""),
        ('key = "${var.key}"\n', "uses an interpolation"),
    ],
)
def test_a_bad_backend_file_is_a_configuration_error_naming_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, cause: str
) -> None:
    path = tmp_path / "bad.tfbackend"
    path.write_text(content)
    code = main(["guard", "--backend-config", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert cause in err.splitlines()[0]
    assert "\nhint: " in err


def test_a_missing_backend_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["guard", "--backend-config", str(tmp_path / "nope.tfbackend")]) == 2
    assert "nope.tfbackend does not exist" in capsys.readouterr().err


def test_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["guard", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
