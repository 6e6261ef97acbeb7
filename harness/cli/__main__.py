"""``python -m harness.cli``: the same as the ``flywheel-chaos`` console script."""

from harness.cli.main import entry

entry()
