"""The suite's root: tests live by what they need, each folder with its own fixtures.

* ``unit/``: pure logic (synthetic records, objects given as data); no server, no lab;
* ``s3/``: real S3 servers (SeaweedFS, RustFS when built) and the real ``tofu`` on loopback;
* ``lab/``: the lab's real Kubernetes control plane, one scratch lab per module in a
  temporary directory on a free slot of its own (never the default lab's).

Helpers without fixtures live in ``support/``. Every test starts from an environment without
the lab's or a user's ``FLYWHEEL_*`` variables (a lab the user runs is never touched).
"""

from __future__ import annotations

import pytest

from flywheel_chaos import settings


@pytest.fixture(autouse=True)
def _no_inherited_flywheel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's ``source .lab/env`` never leaks into a test (fixtures set what they need)."""
    for variable in settings.ALL:
        if variable.name.startswith("FLYWHEEL_"):
            monkeypatch.delenv(variable.name, raising=False)
