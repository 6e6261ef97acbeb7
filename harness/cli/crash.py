"""Where an unexpected error's traceback goes: a file the one error line names (as pip does)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import traceback
from pathlib import Path

from flywheel_chaos import settings


def write_traceback(exc: BaseException) -> Path:
    """Write ``exc``'s traceback under ``FLYWHEEL_STATE_DIR/tracebacks`` (else the temp dir)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = "".join(traceback.format_exception(exc))
    for directory in (settings.state_dir() / "tracebacks", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"flywheel-chaos-{stamp}-{os.getpid()}.txt"
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path("(not written: no writable directory)")
