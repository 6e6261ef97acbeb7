"""Fixtures of the lab tests: one scratch lab per module, defined here once.

Every lab test also runs beside a lab on the default slot (:func:`default_slot_lab`): the
user's running ``.lab`` when there is one (only read), else one of ours; afterwards its
processes and its state key must be as they were.

A module names its topology with ``TOPOLOGY`` (default ``interim-seaweedfs``: the harness's
own behaviour is tested on the SeaweedFS topologies, which need no RustFS build) and extra
variables of its runs with ``RUN_ENV``. The lab lives in a temporary directory on a free
lab slot, so it never touches the default lab (``just demo``) or another module's.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from harness.lab.cluster import Lab
from harness.lab.paths import HOST, LabPaths, Ports
from harness.lab.testing import require_binaries
from harness.processes import pid_alive, port_free
from tests.support.labkit import REPO, fresh_run_env, running_lab, s3_client


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    topology = getattr(request.module, "TOPOLOGY", "interim-seaweedfs")
    with running_lab(tmp_path_factory.mktemp("lab"), topology) as instance:
        yield instance


@pytest.fixture(scope="module")
def lab_env(lab: Lab) -> dict[str, str]:
    """The lab's ``.lab/env`` as ``source`` would set it (nothing changed)."""
    return lab.env_values()


@pytest.fixture
def run_env(
    request: pytest.FixtureRequest, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The lab's environment with a fresh evidence and state directory per test (also set in
    ``os.environ``), plus the module's ``RUN_ENV``."""
    env = fresh_run_env(lab, tmp_path, monkeypatch)
    for name, value in getattr(request.module, "RUN_ENV", {}).items():
        env[name] = value
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="module")
def core(lab: Lab) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(lab.paths.kubeconfig)))


DEFAULT_LAB = REPO / ".lab"


@dataclass
class Witness:
    """A lab on the default slot, watched while every lab test runs beside it (README's
    promise: ``just demo`` and ``just test`` side by side). Ours when the slot was free, else
    the user's own ``.lab`` (then only read, never changed)."""

    lab: Lab
    ours: bool
    pids: list[int]
    state_key: str

    @classmethod
    def observe(cls, lab: Lab, ours: bool) -> Witness:
        return cls(lab, ours, _lab_pids(lab), _state_etag(lab))

    def baseline(self) -> dict[str, Any]:
        """What :meth:`changes` compares against, as JSON (shared by the test workers)."""
        return {"pids": self.pids, "state_key": self.state_key}

    def changes(self) -> list[str]:
        found = []
        dead = [pid for pid in self.pids if not pid_alive(pid)]
        if dead:
            found.append(f"processes of the default lab died: {dead}")
        now = _lab_pids(self.lab)
        if sorted(now) != sorted(self.pids):
            found.append(
                f"the default lab's processes changed: {sorted(self.pids)} -> {sorted(now)}"
            )
        if _state_etag(self.lab) != self.state_key:
            found.append("the default lab's state key is not what it was (ETag)")
        return found


def _state_etag(lab: Lab) -> str:
    """The state key's ETag (HEAD only: a user's lab is read, never written)."""
    env = lab.env_values()
    head = s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
    return str(head["ETag"])


def _lab_pids(lab: Lab) -> list[int]:
    return [int(c["pid"]) for c in lab.read_state().get("components", [])] + lab.pod_pids()


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test processes of this session meet: pytest-xdist's workers share the
    parent of their base temporary directories; a single process has its own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _locked(root: Path) -> Iterator[dict[str, Any]]:
    """The witness's shared book (who uses it, whose lab, the baseline), under a file lock."""
    with (root / "default-slot.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        book_path = root / "default-slot.json"
        book: dict[str, Any] = json.loads(book_path.read_text()) if book_path.exists() else {}
        yield book
        book_path.write_text(json.dumps(book))


def _first_user(root: Path) -> dict[str, Any]:
    """Starts (or finds) the default slot's lab for the first worker and writes the baseline."""
    user = Lab(LabPaths(DEFAULT_LAB))
    if user.is_up():
        return {"dir": str(DEFAULT_LAB), "ours": False, **Witness.observe(user, False).baseline()}
    if not all(port_free(HOST, port) for port in Ports(0).all()):
        pytest.fail(
            "the default lab slot's ports are taken, but not by this repository's .lab: "
            "stop what holds them (flywheel-chaos lab status / ss -ltnp)"
        )
    require_binaries("interim-seaweedfs")
    directory = root / "default-slot"
    lab = Lab(LabPaths(directory), "interim-seaweedfs", Ports(0))
    lab.up(lambda message: None)
    return {"dir": str(directory), "ours": True, **Witness.observe(lab, True).baseline()}


@pytest.fixture(scope="session", autouse=True)
def default_slot_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witness]:
    """Every lab test runs beside a lab on the default slot, which must be untouched after.

    Under pytest-xdist the workers share that one lab: the first to arrive starts it (or finds
    the user's) and writes the baseline, each compares against it when it is done, and the
    last to leave stops ours."""
    root = _shared_root(tmp_path_factory)
    with _locked(root) as book:
        if not book.get("users"):
            book.update(_first_user(root), users=0)
        book["users"] += 1
        paths = LabPaths(Path(book["dir"]))
        lab = Lab(paths, "interim-seaweedfs", Ports(0)) if book["ours"] else Lab(paths)
        witness = Witness(lab, book["ours"], book["pids"], book["state_key"])
    try:
        yield witness
    finally:
        with _locked(root) as book:
            changes = witness.changes()
            book["users"] -= 1
            if book["users"] == 0 and witness.ours:
                lab.down(lambda message: None)
                book.clear()
    whose = "the default slot's lab" if witness.ours else "the running default lab"
    assert changes == [], f"the lab tests touched {whose}: " + "; ".join(changes)
