"""The game day as the cluster runs it: deploy/overlays/lab applied with the real kustomize,
Jobs made from the CronJob, each pod run by the lab's kubelet as a real process with a token
from the TokenRequest API, evidence pushed to a second S3 server and counted by the gate
outside the cluster."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from harness.lab.cluster import Lab
from harness.lab.components.apiserver import ISSUER
from harness.lab.incluster import HARNESS_NAMESPACE
from harness.lab.paths import service_address
from tests.support.labkit import BIN, REPO, chaos_start, cli, serving
from tests.support.webhook import receiver
from tests.support.wheelkit import install_wheel

pytestmark = pytest.mark.lab

CRONJOB = "flywheel-chaos-weekly"
JOB_DEADLINE_S = 420.0


def _kubectl(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubectl"), f"--kubeconfig={lab.paths.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=check,
    )


@pytest.fixture(scope="module")
def batch(lab: Lab) -> client.BatchV1Api:
    return client.BatchV1Api(config.new_client_from_config(config_file=str(lab.paths.kubeconfig)))


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Lab:
    """``kubectl apply -k deploy/overlays/lab``, and its evidence store initialised."""
    _kubectl(lab, "apply", "-k", str(REPO / "deploy" / "overlays" / "lab"))
    _kubectl(
        lab,
        "wait",
        "--for=condition=complete",
        "job/flywheel-evidence-init",
        "-n",
        HARNESS_NAMESPACE,
        "--timeout=200s",
    )
    return lab


def _job(batch: client.BatchV1Api, name: str, args: list[str] | None = None) -> None:
    """What ``kubectl create job --from=cronjob/...`` makes (its template, owned by the
    CronJob), with the container's args replaced when ``args`` is given."""
    cronjob = batch.read_namespaced_cron_job(CRONJOB, HARNESS_NAMESPACE)
    spec = cronjob.spec.job_template.spec
    if args is not None:
        spec.template.spec.containers[0].args = args
    job = client.V1Job(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=HARNESS_NAMESPACE,
            annotations={"cronjob.kubernetes.io/instantiate": "manual"},
            owner_references=[
                client.V1OwnerReference(
                    api_version="batch/v1",
                    kind="CronJob",
                    name=CRONJOB,
                    uid=cronjob.metadata.uid,
                    controller=True,
                )
            ],
        ),
        spec=spec,
    )
    batch.create_namespaced_job(HARNESS_NAMESPACE, job)


def _finished(batch: client.BatchV1Api, name: str, deadline_s: float = JOB_DEADLINE_S) -> str:
    """``Complete`` or ``Failed``, waiting at most ``deadline_s`` for the Job to end."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = batch.read_namespaced_job_status(name, HARNESS_NAMESPACE).status
        for condition in status.conditions or []:
            if condition.type in ("Complete", "Failed") and condition.status == "True":
                return str(condition.type)
        time.sleep(1.0)
    raise AssertionError(f"Job {name} did not finish within {deadline_s:.0f} s")


def _pod(core: client.CoreV1Api, job: str) -> Any:
    (pod,) = core.list_namespaced_pod(HARNESS_NAMESPACE, label_selector=f"job-name={job}").items
    return pod


def _pod_dir(lab: Lab, pod: Any) -> Path:
    return lab.paths.node_dir(pod.spec.node_name) / "pods" / pod.metadata.uid[:13]


def _log(lab: Lab, pod: Any) -> str:
    return (_pod_dir(lab, pod) / "gameday.log").read_text(errors="replace")


def _store_env(lab: Lab, core: client.CoreV1Api, base: dict[str, str]) -> dict[str, str]:
    """The evidence store as seen from outside the cluster (its Service's loopback twin)."""
    creds = json.loads((lab.paths.root / "evidence-store.json").read_text())
    service = core.read_namespaced_service("flywheel-evidence", HARNESS_NAMESPACE)
    return {
        **base,
        "FLYWHEEL_EVIDENCE_URL": "s3://flywheel-evidence/lab",
        "FLYWHEEL_EVIDENCE_ENDPOINT_URL": f"http://{service_address(service.spec.cluster_ip)}:8333",
        "FLYWHEEL_EVIDENCE_ACCESS_KEY_ID": creds["access_key"],
        "FLYWHEEL_EVIDENCE_SECRET_ACCESS_KEY": creds["secret_key"],
    }


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    """A Slack-compatible webhook receiver on loopback: its URL and the bodies it got."""
    with receiver() as hook:
        yield hook


def test_the_job_from_the_cronjob_runs_as_its_service_account_and_the_gate_outside_counts_it(
    deployed: Lab,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    run_env: dict[str, str],
    webhook: tuple[str, list[bytes]],
    tmp_path: Path,
) -> None:
    lab = deployed
    url, received = webhook
    _kubectl(lab, "create", "secret", "generic", "flywheel-chaos-notify", "-n",
             HARNESS_NAMESPACE, f"--from-literal=url={url}")  # fmt: skip
    try:
        _job(batch, "proofs-now", ["gameday", "proofs", "--runs", "1"])
        outcome = _finished(batch, "proofs-now")
    finally:
        _kubectl(lab, "delete", "secret", "flywheel-chaos-notify", "-n", HARNESS_NAMESPACE)
    pod = _pod(core, "proofs-now")
    log = _log(lab, pod)
    assert outcome == "Complete", log[-3000:]
    # it ran as a process (the kubelet's container id is its pid) that exited 0
    (status,) = pod.status.container_statuses
    assert status.container_id.startswith("flywheel://") and status.container_id != "flywheel://0"
    assert status.state.terminated.exit_code == 0
    # with a token the TokenRequest API issued for this pod, its audience and lifetime as the
    # ServiceAccount admission plugin projected them
    volume = next(v for v in pod.spec.volumes if v.name.startswith("kube-api-access-"))
    token = (_pod_dir(lab, pod) / "volumes" / volume.name / "token").read_text()
    claims = _claims(token)
    assert claims["aud"] == [ISSUER]
    assert claims["exp"] - claims["iat"] == 3607
    assert claims["sub"] == f"system:serviceaccount:{HARNESS_NAMESPACE}:flywheel-chaos"
    assert claims["kubernetes.io"]["pod"] == {"name": pod.metadata.name, "uid": pod.metadata.uid}
    assert "KUBECONFIG" not in {e.name for e in pod.spec.containers[0].env}
    # one summary on the webhook, without the lab's S3 secret, the token or the webhook's own
    assert len(received) == 1, received
    body = received[0].decode()
    assert "game day proofs passed" in json.loads(body)["text"]
    for secret in (run_env["AWS_SECRET_ACCESS_KEY"], token, "T0K3N"):
        assert secret not in body
    # outside the cluster: pull from the store, verify, and the gate counts those runs
    outside = _store_env(lab, core, {**run_env, "FLYWHEEL_EVIDENCE_DIR": str(tmp_path / "pulled")})
    pulled = cli(["evidence", "pull"], outside)
    assert pulled.returncode == 0, pulled.stderr
    verified = cli(["evidence", "verify"], outside)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    gate = json.loads(cli(["gate", "--json"], outside).stdout)
    rows = {r["requirement"]: r for r in gate["requirements"]}
    for row in ("backup-restore", "no-op-plan", "pre-mutation-guard"):
        assert rows[row]["status"] == "proven", rows[row]
        assert (tmp_path / "pulled" / str(rows[row]["evidence"])).exists(), rows[row]
    assert not gate["unsigned"] and not gate["store_problems"]


def test_a_role_without_one_verb_fails_the_job_names_the_permission_and_leaves_nothing_cordoned(
    deployed: Lab, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    lab = deployed
    rules = json.loads(_kubectl(lab, "get", "role", "flywheel-chaos", "-n", "nix-cache",
                                "-o", "jsonpath={.rules}").stdout)  # fmt: skip
    without = [r for r in rules if r.get("resources") != ["pods/eviction"]]
    assert len(without) == len(rules) - 1
    patch = json.dumps([{"op": "replace", "path": "/rules", "value": without}])
    _kubectl(lab, "patch", "role", "flywheel-chaos", "-n", "nix-cache", "--type=json", "-p", patch)
    suite = lab.paths.root / "drain-only.yaml"  # the lab's pods see the host's files
    suite.write_text(
        "name: drain-only\nexperiments:\n  - "
        + str(REPO / "experiments" / "node-drain.yaml")
        + "\n"
    )
    try:
        _job(batch, "no-eviction", ["gameday", str(suite), "--runs", "1"])
        outcome = _finished(batch, "no-eviction")
    finally:
        _kubectl(lab, "apply", "-k", str(REPO / "deploy" / "overlays" / "lab"))
    pod = _pod(core, "no-eviction")
    assert outcome == "Failed", _log(lab, pod)[-3000:]
    evidence = _pod_dir(lab, pod) / "volumes" / "work" / "evidence"
    (record,) = [
        json.loads(p.read_text()) for p in evidence.glob("*-node-drain-*.json")
        if not p.name.endswith(".journal.json")
    ]  # fmt: skip
    text = json.dumps(record)
    assert 'cannot create resource \\"pods/eviction\\"' in text, text[-3000:]
    assert record["verdict"] != "survived"
    assert not core.read_node("bumble").spec.unschedulable


def test_a_job_and_a_local_run_started_together_let_exactly_one_proceed_ten_times(
    deployed: Lab,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    run_env: dict[str, str],
    tmp_path: Path,
) -> None:
    lab = deployed
    suite = lab.paths.root / "restart-only.yaml"
    suite.write_text(
        "name: restart-only\nexperiments:\n  - "
        + str(REPO / "experiments" / "pod-delete.yaml")
        + "\n"
    )
    outcomes = []
    for trial in range(10):
        deadline = time.monotonic() + 120
        while not serving(run_env):
            assert time.monotonic() < deadline, "the state authority did not serve again"
            time.sleep(1)
        name = f"together-{trial}"
        (tmp_path / name).mkdir()
        local = chaos_start(REPO / "experiments" / "pod-delete.yaml", run_env, tmp_path / name)
        _job(batch, name, ["gameday", str(suite), "--runs", "1"])
        output, _ = local.communicate(timeout=300)
        output += (tmp_path / name / "chaos.log").read_text(errors="replace")
        job = _finished(batch, name)
        log = _log(lab, _pod(core, name))
        job_refused = "another experiment holds the cluster lease" in log
        local_refused = "another experiment holds the cluster lease" in output
        outcomes.append((job_refused, local_refused))
        assert job_refused != local_refused, (trial, log[-2000:], output[-2000:])
        if job_refused:  # the refusal names the local run's holder identity (its pid)
            assert job == "Failed" and f"/{local.pid}/" in log, log[-2000:]
        else:  # the local run names the game day's
            assert "/gameday-" in output and local.returncode != 0, output[-2000:]
    # which side wins is up to the machine's timing; that exactly one did is the claim
    assert len(outcomes) == 10


def test_the_installed_wheel_runs_a_game_day_with_no_source_tree(
    lab: Lab, run_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "wheel").mkdir()
    venv = install_wheel(tmp_path / "wheel")
    work = tmp_path / "work"
    work.mkdir()
    junit = work / "gameday.xml"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(venv / "flywheel-chaos"), "gameday", "proofs", "--junit", str(junit), "--json"],
        cwd=work,
        env={**clean, **run_env, "PATH": f"{venv}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert [Path(r["experiment"]).stem for r in summary["results"]] == [
        "backup-restore",
        "tofu-noop-plan",
    ]
    assert REPO.as_posix() not in json.dumps(summary["results"])  # the installed experiments
    assert summary["guard"]["ok"] is True and summary["gate"]["mode"] == "not_ha_ready"
    cases = ET.parse(junit).getroot().findall("testcase")
    assert [c.get("name") for c in cases][:2] == ["backup-restore run 1", "tofu-noop-plan run 1"]
    assert "[1/2] backup-restore: running" in result.stderr  # live progress
