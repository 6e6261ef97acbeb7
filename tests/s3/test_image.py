"""The Containerfile built for real with buildah (vfs storage, chroot isolation) on a Debian
base made locally with debootstrap, then its entry point run: the version, and the shipped
smoke experiment against SeaweedFS on loopback, as the image's non-root user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from flywheel_chaos import __version__
from tests.support.labkit import BIN, REPO

BASE = "localhost/flywheel-base:bookworm"
IMAGE = "localhost/flywheel-chaos:test"


def _why_not() -> str | None:
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {tool}; bootstrap.sh does)"
    if os.geteuid() != 0:
        return "debootstrap makes the base image as root only"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private container storage for this module (never the user's images)."""
    root = tmp_path_factory.mktemp("containers")
    conf = root / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "graph"}"\nrunroot = "{root / "run"}"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(conf),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }


def _just(env: dict[str, str], *args: str, timeout_s: float = 1800) -> None:
    result = subprocess.run(
        [str(BIN / "just"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]


@pytest.fixture(scope="module")
def image(storage: dict[str, str]) -> str:
    _just(storage, "base-image", BASE)
    _just(storage, "image", IMAGE, BASE)
    return IMAGE


def _buildah(env: dict[str, str], *args: str, timeout_s: float = 300) -> str:
    result = subprocess.run(
        ["buildah", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def container(storage: dict[str, str], image: str) -> Iterator[str]:
    name = _buildah(storage, "from", "--isolation", "chroot", image).strip()
    yield name
    _buildah(storage, "rm", name)


def test_the_image_runs_as_65532_with_the_wheel_and_opentofu_only(
    storage: dict[str, str], image: str
) -> None:
    config = json.loads(_buildah(storage, "inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["flywheel-chaos"]


def test_the_images_entry_point_says_its_version(storage: dict[str, str], container: str) -> None:
    out = _buildah(
        storage, "run", "--isolation", "chroot", container, "--", "flywheel-chaos", "--version"
    )
    assert out.strip().endswith(__version__)
    who = _buildah(storage, "run", "--isolation", "chroot", container, "--", "id", "-u")
    assert who.strip() == "65532"
    tofu = _buildah(storage, "run", "--isolation", "chroot", container, "--", "tofu", "version")
    assert "OpenTofu" in tofu


def test_the_images_smoke_experiment_runs_green_against_seaweedfs(
    storage: dict[str, str], container: str, authority_env: dict[str, str]
) -> None:
    env_args = [a for k, v in authority_env.items() for a in ("--env", f"{k}={v}")]
    script = (
        "cd /tmp && chaos --log-file /tmp/chaos.log run --journal-path /tmp/journal.json "
        '"$(flywheel-chaos experiments path state-authority-smoke)" >/dev/null 2>&1; '
        "echo exit=$?; cat /tmp/journal.json"
    )
    out = _buildah(
        storage, "run", "--isolation", "chroot", *env_args, container, "--", "/bin/sh", "-c", script
    )
    first, _, journal = out.partition("\n")
    assert first == "exit=0", out[-3000:]
    document = json.loads(journal)
    assert document["status"] == "completed" and document["deviated"] is False


def test_the_images_smoke_experiment_runs_green_on_a_read_only_root_file_system(
    storage: dict[str, str], container: str, authority_env: dict[str, str]
) -> None:
    # what the CronJob gives it (readOnlyRootFilesystem, an emptyDir at /tmp), as a kubelet
    # would: the image's root bound read-only in a private mount namespace, a tmpfs at /tmp,
    # then chroot as 65532 (buildah run has no read-only root)
    root = _buildah(storage, "mount", container).strip()
    env = {
        "PATH": "/opt/flywheel-chaos/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        **authority_env,
    }
    inside = (
        # the mount options of / as this process sees it (the last mount there wins)
        'awk \'$2 == "/" { split($4, o, ","); r = o[1] } END { print "root=" r }\' '
        "/proc/self/mounts; "
        "cd /tmp && chaos --log-file /tmp/chaos.log run --journal-path /tmp/journal.json "
        '"$(flywheel-chaos experiments path state-authority-smoke)" >/dev/null 2>&1; '
        "echo exit=$?; cat /tmp/journal.json"
    )
    outside = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
        '&& mount -t tmpfs -o mode=1777 flywheel-tmp "$0/tmp" '
        '&& mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" '
        '&& exec chroot --userspec=65532:65532 "$0" /usr/bin/env -i "$@"'
    )
    try:
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                outside,
                root,
                *(f"{k}={v}" for k, v in env.items()),
                "/bin/sh",
                "-c",
                inside,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        _buildah(storage, "unmount", container)
    lines = result.stdout.split("\n", 2)
    assert result.returncode == 0 and len(lines) == 3, result.stdout[-3000:] + result.stderr
    assert lines[0] == "root=ro", lines[0]
    assert lines[1] == "exit=0", result.stdout[-3000:]
    document = json.loads(lines[2])
    assert document["status"] == "completed" and document["deviated"] is False
