"""Talking to the API: the bound of each request and timestamps in the forms it wants."""

from __future__ import annotations

import datetime as dt

API_TIMEOUT = (2.0, 5.0)
"""Connect and read bound of each API request of the node agent."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ts(moment: dt.datetime | None = None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro(moment: dt.datetime | None = None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
