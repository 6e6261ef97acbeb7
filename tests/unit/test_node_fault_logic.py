"""Node-fault methods that must refuse before touching anything (no cluster needed)."""

from __future__ import annotations

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.nodes import make_node_unavailable
from flywheel_chaos.nodefault import helper_pod, kubelet_stop_script


@pytest.fixture(autouse=True)
def no_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLYWHEEL_LAB_DIR", "FLYWHEEL_NODE_FAULT_METHOD", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")


@pytest.mark.parametrize("method", ["lab-freeze", "lab-crash"])
def test_outside_a_lab_the_lab_methods_refuse_before_anything(method: str) -> None:
    with pytest.raises(ActivityFailed, match="there is no lab here"):
        make_node_unavailable("bumble", method=method)


def test_the_production_signature_has_no_lab_parameters() -> None:
    import inspect

    params = set(inspect.signature(make_node_unavailable).parameters)
    assert not {p for p in params if "lab" in p}, params


def test_a_taint_alone_is_refused_with_the_reason() -> None:
    with pytest.raises(ActivityFailed, match="removes a hand-made unreachable taint"):
        make_node_unavailable("bumble", method="taint")


def test_the_command_method_needs_both_commands() -> None:
    with pytest.raises(ActivityFailed, match="needs both a stop and a start command"):
        make_node_unavailable("bumble", method="command", stop_command="ipmitool power off")


def test_the_helper_schedules_the_kubelets_return_before_it_stops_the_kubelet() -> None:
    script = kubelet_stop_script("k3s-agent", 45)
    assert script.index("--on-active=45s systemctl start k3s-agent") < script.index(
        "systemctl stop k3s-agent"
    )
    pod = helper_pod("bumble", "flywheel-chaos", "busybox", "k3s-agent", 45)
    spec = pod["spec"]
    assert spec["nodeName"] == "bumble" and spec["hostPID"] is True
    # into every namespace of the host's PID 1 (mount, UTS, IPC, network, PID)
    assert " ".join(spec["containers"][0]["command"][:9]) == "nsenter -t 1 -m -u -i -n -p --"
    assert spec["tolerations"] == [{"operator": "Exists"}]
