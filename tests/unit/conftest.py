"""Fixtures of the unit tests: none beyond the root's; what they need is given as data."""
