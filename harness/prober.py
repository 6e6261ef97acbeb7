"""Moved to :mod:`harness.controls.prober`; this re-export stays for one release."""

from harness.controls.prober import *  # noqa: F403
