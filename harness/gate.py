"""Moved to :mod:`harness.record.gate`; this re-export stays for one release."""

from harness.record.gate import *  # noqa: F403
