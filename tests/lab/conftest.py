"""Fixtures of the lab tests: one scratch lab per module, defined here once.

A module names its topology with ``TOPOLOGY`` (default ``interim-seaweedfs``: the harness's
own behaviour is tested on the SeaweedFS topologies, which need no RustFS build) and extra
variables of its runs with ``RUN_ENV``. The lab lives in a temporary directory on a free
lab slot, so it never touches the default lab (``just demo``) or another module's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from harness.lab.cluster import Lab
from tests.support.labkit import fresh_run_env, running_lab


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
