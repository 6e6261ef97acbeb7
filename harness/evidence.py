"""Moved to :mod:`harness.record.evidence`; this re-export stays for one release."""

from harness.record.evidence import *  # noqa: F403
