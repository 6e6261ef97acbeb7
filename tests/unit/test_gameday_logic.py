"""Game day planning, its JUnit and notification, and what the lab's kubelet gives a pod."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import assets
from harness.errors import ConfigError
from harness.gameday.finish import junit_cases
from harness.gameday.notify import message, notify
from harness.gameday.suite import experiment_fault, load_suite, plan, runs_setting, suite_path
from harness.lab.nodeagent.links import api_server_links, resolve_service_names, service_names
from harness.lab.nodeagent.projected import refresh_due
from harness.record.gate import gate_cases
from harness.record.junit import write_junit
from harness.record.policy import load_policy
from tests.support.webhook import receiver


def test_the_weekly_suite_with_runs_policy_runs_each_fault_five_times_and_each_proof_once() -> None:
    suite = load_suite(suite_path("weekly"))
    steps = plan(suite, None, load_policy(None))
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.fault] = counts.get(step.fault, 0) + 1
    assert counts == {
        "backup-restore": 1,
        "tofu-noop-plan": 1,
        "pod-delete": 5,
        "node-drain": 5,
        "node-unavailable": 5,
    }
    assert [(s.run, s.of) for s in steps if s.fault == "node-drain"] == [
        (i, 5) for i in range(1, 6)
    ]
    assert suite["guard"] is True


def test_runs_on_the_command_line_override_the_suite_for_every_experiment() -> None:
    suite = load_suite(suite_path("weekly"))
    steps = plan(suite, 2, load_policy(None))
    assert len(steps) == 10 and {s.of for s in steps} == {2}


@pytest.mark.parametrize("bad", [0, -1, "many", "", None])
def test_runs_must_be_a_positive_number_or_policy(bad: Any) -> None:
    with pytest.raises(ConfigError, match="runs must be a positive number or 'policy'"):
        runs_setting(bad)
    assert runs_setting("Policy") == "policy" and runs_setting("3") == 3


def test_a_shipped_suite_is_found_by_name_and_an_unknown_one_names_the_shipped_ones() -> None:
    assert suite_path("ci-short") == assets.gamedays() / "ci-short.yaml"
    with pytest.raises(ConfigError) as refused:
        load_suite(suite_path("nightly"))
    assert "weekly" in str(refused.value.hint) and "ci-short" in str(refused.value.hint)


def test_an_experiments_fault_is_what_its_evidence_control_records() -> None:
    assert experiment_fault(assets.experiment("node-unavailable")) == "node-unavailable"
    assert experiment_fault(assets.experiment("tofu-noop-plan")) == "tofu-noop-plan"


def _summary(**extra: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "suite": "weekly",
        "seconds": 600.0,
        "all_passed": False,
        "breach": None,
        "results": [
            {"experiment": "experiments/pod-delete.yaml", "run": 1, "of": 2, "seconds": 20.0,
             "verdict": "survived", "reasons": [], "evidence": "a.json"},
            {"experiment": "experiments/pod-delete.yaml", "run": 2, "of": 2, "seconds": 25.0,
             "verdict": "not-survived", "reasons": ["outage 70 s over 60 s"], "evidence": "b.json"},
        ],
    }  # fmt: skip
    summary.update(extra)
    return summary


def test_the_game_days_junit_has_one_case_per_run_and_one_per_gate_row(tmp_path: Path) -> None:
    gate = {
        "mode": "not_ha_ready",
        "ok": False,
        "reason": "unproven requirements remain",
        "requirements": [
            {"requirement": "pod-restart", "status": "failed", "detail": "1/2", "evidence": None},
            {"requirement": "backup-restore", "status": "proven", "detail": "", "evidence": "c"},
        ],
    }
    path = write_junit(tmp_path / "j.xml", "gameday weekly", junit_cases(_summary(gate=gate)))
    root = ET.parse(path).getroot()
    names = [case.get("name") for case in root.iter("testcase")]
    assert names == [
        "pod-delete run 1",
        "pod-delete run 2",
        "pod-restart",
        "backup-restore",
        "gate (not_ha_ready)",
    ]
    assert root.get("tests") == "5" and root.get("failures") == "3"
    assert gate_cases(gate)[-1].failure == "unproven requirements remain"


def test_the_notification_names_the_failed_runs_and_carries_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planted = "planted-Secret-Value-0123456789"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", planted)
    summary = _summary(gate={"mode": "not_ha_ready", "reason": f"store said {planted}"})
    summary["results"][1]["reasons"] = [f"denied for key {planted}"]
    with receiver("/hook/T0K3N-in-the-url") as (url, received):
        outcome = notify(url, summary, timeout_s=5.0)
    assert outcome["sent"] is True and len(received) == 1
    text = json.loads(received[0])["text"]
    assert "pod-delete" in text and "not-survived" in text and "not_ha_ready" in text
    assert planted not in text and "T0K3N" not in text
    assert "FAILED" in message(summary)


def test_an_unanswering_webhook_delays_the_game_day_by_at_most_its_timeout() -> None:
    # a listener that accepts connections but never answers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        started = time.monotonic()
        outcome = notify(f"http://127.0.0.1:{listener.getsockname()[1]}/", _summary(), 1.0)
        took = time.monotonic() - started
    finally:
        listener.close()
    assert outcome["sent"] is False
    assert took < 1.5, f"the notification held the game day {took:.2f} s"


def test_a_webhook_that_is_not_http_is_never_called() -> None:
    assert notify("file:///etc/passwd", _summary())["sent"] is False


def test_a_token_is_renewed_after_80_percent_of_its_life_or_a_day() -> None:
    issued = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    hour = issued + dt.timedelta(seconds=3607)
    assert not refresh_due(issued, hour, issued + dt.timedelta(seconds=2885))
    assert refresh_due(issued, hour, issued + dt.timedelta(seconds=2886))
    year = issued + dt.timedelta(days=365)
    assert not refresh_due(issued, year, issued + dt.timedelta(hours=23))
    assert refresh_due(issued, year, issued + dt.timedelta(hours=24))


def _service(namespace: str, name: str, ip: str, port: int, port_name: str = "") -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace=namespace, name=name),
        spec=SimpleNamespace(cluster_ip=ip, ports=[SimpleNamespace(port=port, name=port_name)]),
    )


def test_a_pod_reaches_the_api_and_services_by_name_through_their_loopback_twins() -> None:
    services = [
        _service("default", "kubernetes", "10.97.0.1", 443, "https"),
        _service("nix-cache", "attic-rustfs-openebs", "10.97.0.17", 9000, "s3"),
    ]
    assert api_server_links(services) == {
        "KUBERNETES_SERVICE_HOST": "127.97.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    }
    names = service_names(services)
    assert (
        resolve_service_names("http://attic-rustfs-openebs.nix-cache.svc:9000", names)
        == "http://127.97.0.17:9000"
    )
    assert (
        resolve_service_names("https://attic-rustfs-openebs.nix-cache.svc.cluster.local/x", names)
        == "https://127.97.0.17/x"
    )
    # an unknown name, or a longer host ending the same way, stays as it is
    for text in ("http://other.nix-cache.svc:1", "http://a.attic-rustfs-openebs.nix-cache.svcx"):
        assert resolve_service_names(text, names) == text
