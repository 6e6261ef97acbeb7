"""The disk view's listing and its debug pod's plan: the script a real cluster runs, read here."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from flywheel_chaos.diskview import (
    LABEL,
    MOUNT_ROOT,
    SCRIPT,
    DebugPod,
    Mount,
    list_volumes,
    manifest,
    parse,
    plan,
)


def _volume(root: Path, name: str) -> Path:
    """A RustFS-shaped drive: bucket metadata, an object's xl.meta and a data part."""
    top = root / name
    (top / ".rustfs.sys" / "buckets" / "tofu-state" / ".metadata.bin").mkdir(parents=True)
    (top / ".rustfs.sys" / "buckets" / "tofu-state" / ".metadata.bin" / "xl.meta").write_bytes(
        b"meta"
    )
    (top / "tofu-state" / "platform" / "terraform.tfstate").mkdir(parents=True)
    (top / "tofu-state" / "platform" / "terraform.tfstate" / "xl.meta").write_bytes(b"x" * 300)
    (top / "tofu-state" / "big.bin").write_bytes(b"secret object contents")
    return top


def _busybox_path(tmp_path: Path) -> str:
    """A PATH with nothing but busybox's applets, as in the debug pod's default image."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is not installed: bash bootstrap.sh installs busybox-static")
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    for applet in ("sh", "find", "stat", "sha256sum", "cut"):
        (applets / applet).symlink_to(busybox)
    return str(applets)


def _script(root: Path, volumes: list[str], limit: int = 5000, path: str = "/usr/bin:/bin") -> str:
    return subprocess.run(
        ["sh", "-c", SCRIPT, "sh", str(root), *volumes],
        env={"PATH": path, "FLYWHEEL_DISK_ENTRIES": str(limit)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


@pytest.mark.parametrize("shell", ["busybox", "this machine's sh"])
def test_the_debug_pods_script_and_the_labs_lister_write_the_same_listing(
    tmp_path: Path, shell: str
) -> None:
    path = _busybox_path(tmp_path) if shell == "busybox" else "/usr/bin:/bin"
    for name in ("pvc-a", "pvc-b"):
        _volume(tmp_path, name)
    by_script = parse(_script(tmp_path, ["pvc-a", "pvc-b", "pvc-gone"], path=path))
    by_python = parse(
        list_volumes({n: tmp_path / n for n in ("pvc-a", "pvc-b", "pvc-gone")}),
    )
    assert by_script.complete and by_python.complete
    assert by_script.entries == by_python.entries
    assert by_script.missing == by_python.missing == ["pvc-gone"]
    assert not by_script.errors and not by_python.errors
    files = {e["path"]: e for e in by_script.entries if not e["dir"]}
    meta = files["pvc-a/tofu-state/platform/terraform.tfstate/xl.meta"]
    assert meta == {
        "path": "pvc-a/tofu-state/platform/terraform.tfstate/xl.meta",
        "dir": False,
        "size": 300,
        "sha256": hashlib.sha256(b"x" * 300).hexdigest(),
    }
    # an object's contents are never read: sizes only, no hash
    assert "sha256" not in files["pvc-a/tofu-state/big.bin"]


def test_a_listing_over_its_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    _volume(tmp_path, "pvc-a")
    for text in (
        _script(tmp_path, ["pvc-a"], limit=3, path=_busybox_path(tmp_path)),
        list_volumes({"pvc-a": tmp_path / "pvc-a"}, limit=3),
    ):
        listing = parse(text)
        assert listing.cut and listing.complete
        assert len(listing.entries) == 3


def test_a_listing_without_its_end_line_is_incomplete() -> None:
    listing = parse("d\tpvc-a/x\nf\t3\t-\tpvc-a/x/y\n")
    assert not listing.complete
    assert [e["path"] for e in listing.entries] == ["pvc-a/x", "pvc-a/x/y"]


def _claim(name: str, volume: str, modes: list[str]) -> Any:
    return client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name, namespace="nix-cache"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=modes, volume_name=volume),
    )


def _pv(name: str, node: str, source: str = "csi") -> Any:
    spec = client.V1PersistentVolumeSpec(
        node_affinity=client.V1VolumeNodeAffinity(
            required=client.V1NodeSelector(
                node_selector_terms=[
                    client.V1NodeSelectorTerm(
                        match_expressions=[
                            client.V1NodeSelectorRequirement(
                                key="openebs.io/nodeid", operator="In", values=[node]
                            )
                        ]
                    )
                ]
            )
        )
    )
    if source == "csi":
        spec.csi = client.V1CSIPersistentVolumeSource(
            driver="zfs.csi.openebs.io", volume_handle=name
        )
    else:
        spec.local = client.V1LocalVolumeSource(path=f"/var/openebs/local/{name}")
    return client.V1PersistentVolume(metadata=client.V1ObjectMeta(name=name), spec=spec)


def _pod(name: str, uid: str, node: str, claims: list[str]) -> Any:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, uid=uid),
        spec=client.V1PodSpec(
            node_name=node,
            containers=[],
            volumes=[
                client.V1Volume(
                    name=c,
                    persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                        claim_name=c
                    ),
                )
                for c in claims
            ],
        ),
        status=client.V1PodStatus(phase="Running"),
    )


NODES = {"bumble", "honey", "sting"}


def test_a_claim_nobody_uses_is_mounted_read_only_in_its_namespace_on_its_volumes_node() -> None:
    pods, notes = plan(
        "nix-cache",
        [_claim("data", "pvc-data", ["ReadWriteOncePod"])],
        {"pvc-data": _pv("pvc-data", "bumble")},
        [],
        NODES,
        "flywheel-chaos",
    )
    assert notes == []
    assert pods == [DebugPod("nix-cache", "bumble", (Mount("pvc-data", "data"),))]
    spec = manifest(pods[0], "dv", "busybox:1.36", 30)["spec"]
    assert spec["volumes"] == [
        {"name": "disk-0", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}
    ]
    (container,) = spec["containers"]
    assert container["volumeMounts"] == [
        {"name": "disk-0", "mountPath": f"{MOUNT_ROOT}/pvc-data", "readOnly": True}
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["DAC_OVERRIDE"],
    }
    assert spec["nodeName"] == "bumble" and spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 30
    assert spec["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize("mode", ["ReadWriteOnce", "ReadWriteOncePod"])
def test_a_claim_in_use_is_read_through_its_users_node_never_mounted_a_second_time(
    mode: str,
) -> None:
    pods, notes = plan(
        "nix-cache",
        [_claim("data1", "pvc-1", [mode]), _claim("data2", "pvc-2", [mode])],
        {"pvc-1": _pv("pvc-1", "bumble"), "pvc-2": _pv("pvc-2", "bumble", source="local")},
        [_pod("rustfs-bumble-0", "uid-7", "bumble", ["data1", "data2"])],
        NODES,
        "flywheel-chaos",
        kubelet_root="/var/lib/kubelet",
    )
    assert notes == []
    (pod,) = pods
    assert (pod.namespace, pod.node) == ("flywheel-chaos", "bumble")
    assert [m.host_path for m in pod.mounts] == [
        "/var/lib/kubelet/pods/uid-7/volumes/kubernetes.io~csi/pvc-1/mount",
        "/var/openebs/local/pvc-2",
    ]
    document = manifest(pod, "dv", "busybox:1.36", 30)
    assert document["spec"]["volumes"][0]["hostPath"] == {
        "path": "/var/lib/kubelet/pods/uid-7/volumes/kubernetes.io~csi/pvc-1/mount",
        "type": "Directory",
    }
    assert not any("persistentVolumeClaim" in v for v in document["spec"]["volumes"])
    assert document["metadata"]["labels"][LABEL] == "disk-view"


def test_an_unbound_claim_and_one_in_use_on_a_volume_without_a_node_path_are_named() -> None:
    nfs = _pv("pvc-nfs", "bumble")
    nfs.spec.csi = None
    nfs.spec.nfs = client.V1NFSVolumeSource(server="nfs.example", path="/export")
    pods, notes = plan(
        "nix-cache",
        [_claim("shared", "pvc-nfs", ["ReadWriteMany"]), _claim("loose", "", ["ReadWriteOnce"])],
        {"pvc-nfs": nfs},
        [_pod("server", "uid-1", "honey", ["shared"])],
        NODES,
        "flywheel-chaos",
    )
    assert pods == []
    assert notes == [
        "claim shared: in use by server, and its volume has no path on the node to read "
        "(neither local, hostPath nor CSI)",
        "claim loose: not bound to a volume",
    ]


@pytest.mark.parametrize("phase", ["Pending", "Succeeded"])
def test_a_pod_that_is_not_running_does_not_count_as_the_claims_user(phase: str) -> None:
    user = _pod("old", "uid-1", "honey", ["data"])
    user.status.phase = phase
    pods, _ = plan(
        "nix-cache",
        [_claim("data", "pvc-data", ["ReadWriteOnce"])],
        {"pvc-data": _pv("pvc-data", "bumble")},
        [user],
        NODES,
        "flywheel-chaos",
    )
    # mounted by claim, on the volume's own node (from its affinity)
    assert [(p.namespace, p.node) for p in pods] == [("nix-cache", "bumble")]
