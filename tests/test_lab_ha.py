"""The replicated candidate (``lab up --topology ha``) against the lab's real kube-apiserver.

Deterministic facts only: placement, the guard across three gateways, what
the gate reads, recovery from losing one gateway, and single-writer volumes
across a restart. How the candidate fares under each fault (verdicts, outage
lengths) varies run to run and is measured by ``benchmarks/ha_candidate.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from labkit import cli, fresh_run_env, running_lab

from actions.pods import delete_state_authority_pods
from harness.errors import ConfigError
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.lab.paths import LabPaths
from harness.processes import wait_until
from probes.state_authority import state_authority_serving_within

pytestmark = pytest.mark.lab

GATEWAYS = "app.kubernetes.io/name=attic-rustfs-openebs"
COMPONENTS = ("tofu-meta", "seaweedfs-master", "seaweedfs-volume", "attic-rustfs-openebs")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(".lab-test-ha", topology="ha") as instance:
        yield instance


@pytest.fixture
def lab_env(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return fresh_run_env(lab, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def core(lab: Lab) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(lab.paths.kubeconfig)))


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


def test_the_guard_passes_with_three_gateways_behind_one_service(
    lab_env: dict[str, str], core: client.CoreV1Api
) -> None:
    assert len(_ready_gateways(core)) == 3
    result = cli(["guard", "--json"], lab_env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    # the 8 racers are spread over the gateways by the service proxy: still one winner
    assert checks["lock-exclusive"]["result"]["race_winners"] == 1


def test_the_gate_reads_a_replicated_posture_and_refuses_the_interim_flag(
    lab_env: dict[str, str],
) -> None:
    result = cli(["gate", "--json", "--expect-interim"], lab_env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["mode"] == "posture_unknown"
    assert report["facts"]["replicas"] == 3
    assert report["facts"]["ready_endpoints"] == 3
    assert report["facts"]["volumes"] == []  # the gateways are stateless
    assert report["facts"]["restart_shares_volume"] == []
    assert report["facts"]["openebs_zfs_nodes"] == 3
    assert report["facts"]["interim_posture"] is False


def test_losing_a_gateway_keeps_state_served_and_a_replacement_returns(
    lab_env: dict[str, str], core: client.CoreV1Api
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
    lab_env: dict[str, str], core: client.CoreV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = "flywheel.lab/member=seaweedfs-volume-bumble"
    claim = core.read_namespaced_persistent_volume_claim(
        "seaweedfs-volume-bumble-data", STATE_NAMESPACE, _request_timeout=5
    )
    assert claim.spec.access_modes == ["ReadWriteOncePod"]
    monkeypatch.setenv("FLYWHEEL_NAMESPACE_ALLOWLIST", STATE_NAMESPACE)
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
        "the lab is already up with topology ha; nothing changed "
        "('lab down --clean' first to switch topology)"
    ]
    # without a choice the lab keeps its own topology
    assert Lab(LabPaths(lab.paths.root)).topology == "ha"


def test_up_refuses_to_start_another_topology_on_kept_data(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path / "kept")
    paths.etcd_data.mkdir(parents=True)
    paths.state.write_text(json.dumps({"topology": "ha", "components": []}))
    with pytest.raises(ConfigError, match="keeps the data of topology 'ha', not 'interim'"):
        Lab(paths, topology="interim").up(lambda message: None)
    assert sorted(p.name for p in paths.root.iterdir()) == ["etcd", "lab.lock", "state.json"]
