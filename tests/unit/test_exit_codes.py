"""Exit codes as pip has them: errors carry theirs; an unexpected one is 3 with a traceback file."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from flywheel_chaos.errors import EXIT_FAILED, EXIT_UNEXPECTED, EXIT_USAGE
from flywheel_chaos.kube.client import KubeconfigError
from flywheel_chaos.kube.safety import SafetyRefusal
from flywheel_chaos.s3.errors import StateAuthorityError

cli_main = importlib.import_module("harness.cli.main")  # the package's main() shadows it


def _handler_raising(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """``lab status`` raises ``exc`` (the parser binds its handler when main builds it)."""

    def boom(args: object) -> int:
        raise exc

    monkeypatch.setattr(importlib.import_module("harness.cli.lab"), "_cmd_status", boom)


def test_an_unexpected_exception_exits_3_naming_the_file_that_holds_its_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLYWHEEL_STATE_DIR", str(tmp_path))
    _handler_raising(RuntimeError("the unforeseen"), monkeypatch)
    assert cli_main.main(["lab", "status"]) == EXIT_UNEXPECTED
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("error: unexpected RuntimeError: the unforeseen (traceback: ")
    path = Path(re.search(r"\(traceback: (.+)\)$", first).group(1))  # type: ignore[union-attr]
    assert path.parent == tmp_path / "tracebacks"
    assert "RuntimeError: the unforeseen" in path.read_text()
    assert "Traceback" in path.read_text()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (KubeconfigError("configuration: cannot load a kubeconfig"), EXIT_USAGE),
        (SafetyRefusal("refused: node 'wasp' is not in the node allowlist"), EXIT_FAILED),
        (StateAuthorityError("timeout", "ReadTimeoutError", "no answer"), EXIT_FAILED),
    ],
)
def test_a_library_error_exits_with_the_code_its_type_carries_and_one_line(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _handler_raising(error, monkeypatch)
    assert cli_main.main(["lab", "status"]) == code
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: {error}"
    assert "traceback" not in err.lower()
