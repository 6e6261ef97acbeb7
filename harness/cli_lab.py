"""``flywheel-chaos lab ...`` (filled in by the lab)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the lab commands to the top-level parser."""
