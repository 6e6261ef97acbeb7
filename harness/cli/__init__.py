"""``flywheel-chaos``: the operator's command line (``main`` is the console script).

Rooms: :mod:`~harness.cli.output` (how every command prints), :mod:`~harness.cli.main`
(the parser, guard, gate, game day and recover), :mod:`~harness.cli.lab` and
:mod:`~harness.cli.evidence` (their command groups).
"""

from __future__ import annotations

from harness.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
