"""The survival prober: samples the state authority in the background while a fault is live.

Two threads: HEAD of the protected state key every ``head_interval_s``
(default 100 ms) and a canary write/read every ``canary_interval_s`` (1 s).
Each sample is timestamped. :func:`summarize` turns the samples into outage
windows (spans in which the HEAD or the canary failed: from the first failed
sample until both signals succeed again), the longest outage, the time to recover after the fault
action ended, and the error classes seen.

It also says how well it watched (``coverage``): the largest gap between one
HEAD sample's answer and the next sample's start (and from the last sample to the end of
measurement), and how many samples were lost to errors of the prober's own (anything that
is not an answer or a failure of the server). A stalled sampler would otherwise read as
uptime. A success slower than :data:`SLOW_SUCCESS_MS` counts as an outage from its start to
its answer: a HEAD that hangs 45 s and then answers was 45 s of nothing served.

While the authority is down, the canary is sampled as often as HEAD, so that a window
closes when the service does, not on the next once-a-second canary; and :meth:`Prober.finish`
keeps sampling until no window is open (or its bound passes), so a window still open only
because sampling stopped is measured to its end.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import botocore.config
import botocore.exceptions

from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.client import new_s3_client, s3_client
from flywheel_chaos.s3.errors import classify

logger = logging.getLogger("flywheel_chaos.prober")

__all__ = ["SLOW_SUCCESS_MS", "Prober", "Sample", "coverage", "outage_windows", "summarize"]

SLOW_SUCCESS_MS = 1000.0
"""A success slower than this is an outage from its start to its answer."""


@dataclass
class Sample:
    kind: str  # "head" | "canary"
    at: float  # time.time() when the request started
    ok: bool
    latency_ms: float
    error: str | None = None


@dataclass
class Prober:
    """Background sampler of one state authority."""

    authority: StateAuthority
    head_interval_s: float = 0.1
    canary_interval_s: float = 1.0
    request_timeout_s: float = 1.0
    head_new_connection: bool = True
    """Send each HEAD on a new connection, as a fresh ``tofu plan`` would. Behind a
    Service that balances connections, the samples then cover every ready backend;
    one kept-alive connection would only ever ask the backend it landed on."""
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    started_at: float = 0.0
    stopped_at: float = 0.0
    canaries_written: int = 0
    canaries_verified: int = 0
    errors: int = 0
    """Samples lost to errors of the prober's own (not answers or failures of the server)."""
    _last: dict[str, bool] = field(default_factory=dict)
    _wake: dict[str, threading.Event] = field(
        default_factory=lambda: {"head": threading.Event(), "canary": threading.Event()}
    )
    """Set to end a loop's pause at once: :meth:`wait_samples` with ``hurry``, and stopping."""

    def _client(self, kind: str) -> Any:
        # the probes' client factory, with the prober's shorter bounds and no retries
        bounded = self.authority.with_overrides(
            connect_timeout_s=min(0.5, self.request_timeout_s),
            read_timeout_s=self.request_timeout_s,
        )
        if kind != "head":
            return s3_client(bounded)
        # the HEAD loop has a client of its own: its connection is never one the canary's
        # requests opened (with head_new_connection off, one kept-alive connection)
        client = new_s3_client(bounded)
        if self.head_new_connection:
            client.meta.events.register("before-send.s3.HeadObject", _close_after_answer)
        return client

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)
            self._last[sample.kind] = sample.ok and sample.latency_ms <= SLOW_SUCCESS_MS

    def _down(self) -> bool:
        """Whether the latest sample of either signal failed (the authority looks down)."""
        with self._lock:
            return not all(self._last.values()) if self._last else False

    def _loop(self, kind: str, interval: float) -> None:
        client = self._client(kind)
        next_at = time.monotonic()
        while not self._stop.is_set():
            started_wall, started = time.time(), time.monotonic()
            steps: list[tuple[float, float]] = [(started_wall, started)]
            try:
                if kind == "head":
                    client.head_object(Bucket=self.authority.bucket, Key=self.authority.key)
                    answered = time.monotonic()
                else:
                    answered = self._canary(client, steps)
                self._record(Sample(kind, started_wall, True, (answered - started) * 1000))
            except (
                botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError,
                ValueError,
            ) as exc:
                error = (
                    classify(exc, self.authority).error_class
                    if not isinstance(exc, ValueError)
                    else "integrity-mismatch"
                )
                # a failure dates from the request that failed, not from the
                # canary's first step: its PUT may have answered before the fault began
                failed_wall, failed = steps[-1]
                self._record(
                    Sample(kind, failed_wall, False, (time.monotonic() - failed) * 1000, error)
                )
            except Exception as exc:  # the prober's own failure: a lost sample, never uptime
                with self._lock:
                    self.errors += 1
                logger.warning("%s sample lost to a prober error: %r", kind, exc)
            if kind == "canary" and self._down():  # down: as often as HEAD, to see it end
                next_at = time.monotonic() + self.head_interval_s
            else:
                next_at = max(next_at + interval, time.monotonic())
            wake = self._wake[kind]
            if wake.wait(max(0.0, next_at - time.monotonic())):
                wake.clear()  # woken (a hurried wait, or the stop checked at the loop's top)

    def _canary(self, client: Any, steps: list[tuple[float, float]]) -> float:
        """Write a canary, read it back and compare; ``steps`` gets each request's start.

        Returns the monotonic time the bytes were verified (the clean-up after
        that is not part of the sample).
        """
        key = f"{CANARY_PREFIX}prober/{uuid.uuid4().hex}"
        body = os.urandom(1024)
        put = client.put_object(Bucket=self.authority.bucket, Key=key, Body=body)
        self.canaries_written += 1
        try:
            steps.append((time.time(), time.monotonic()))
            data = client.get_object(Bucket=self.authority.bucket, Key=key)["Body"].read()
            if hashlib.sha256(data).digest() != hashlib.sha256(body).digest():
                raise ValueError("canary read back different bytes")
            self.canaries_verified += 1
            verified = time.monotonic()
        finally:
            kwargs = {"Bucket": self.authority.bucket, "Key": key}
            if put.get("VersionId") and put["VersionId"] != "null":
                kwargs["VersionId"] = put["VersionId"]
            with contextlib.suppress(Exception):
                client.delete_object(**kwargs)
        return verified

    def start(self, restart: bool = False) -> None:
        if not restart:
            self.started_at = time.time()
        for wake in self._wake.values():
            wake.clear()
        for kind, interval in (("head", self.head_interval_s), ("canary", self.canary_interval_s)):
            thread = threading.Thread(
                target=self._loop, args=(kind, interval), name=f"prober-{kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _halt(self) -> None:
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout=self.request_timeout_s + 2)
        self._threads = []

    def stop(self) -> None:
        if self.stopped_at:
            return
        self._halt()
        self.stopped_at = time.time()

    def finish(self, deadline: float) -> bool:
        """Stop once no outage window is open, sampling on until then or ``deadline`` (a
        monotonic instant); True when it stopped with every window closed."""
        while True:
            self._halt()
            now = time.time()
            windows = outage_windows(self.snapshot(), now)
            if not windows or not windows[-1]["open"] or time.monotonic() >= deadline:
                self.stopped_at = now
                return not windows or not windows[-1]["open"]
            logger.info("an outage window is still open when sampling would stop: sampling on")
            self._stop = threading.Event()
            self.start(restart=True)
            while time.monotonic() < deadline:
                time.sleep(0.1)
                windows = outage_windows(self.snapshot(), time.time())
                if not windows or not windows[-1]["open"]:
                    time.sleep(max(self.head_interval_s, 0.05) * 2)  # a sample or two after
                    break

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def wait_samples(
        self, head: int, canary: int, since: float, within_s: float, hurry: bool = False
    ) -> bool:
        """Wait until ``head`` HEAD and ``canary`` canary samples that started at or after
        ``since`` (a ``time.time()``) have been taken, at most ``within_s``; whether they were.
        What a baseline or a tail needs is samples, not a fixed pause.

        With ``hurry`` the loops still owed samples take them at once, one after another,
        instead of at their next interval: a tail after the run needs samples begun after
        it, not samples spread over time (the steady sampling before it watched the run)."""
        deadline = time.monotonic() + within_s
        while True:
            taken = self.snapshot()
            heads = sum(1 for x in taken if x.kind == "head" and x.at >= since)
            canaries = sum(1 for x in taken if x.kind == "canary" and x.at >= since)
            if heads >= head and canaries >= canary:
                return True
            if time.monotonic() >= deadline:
                return False
            if hurry:
                for kind, owed in (("head", heads < head), ("canary", canaries < canary)):
                    if owed:
                        self._wake[kind].set()
            time.sleep(0.005 if hurry else min(0.02, self.head_interval_s / 4))


def _close_after_answer(request: Any, **kwargs: Any) -> None:
    """botocore ``before-send`` hook: ask the server to close the connection after
    answering, so that the next request opens a new one (not signed, so harmless)."""
    request.headers["Connection"] = "close"


def _moment(sample: Sample) -> float:
    """When a sample tells something: a failure at the request's start (the
    service failed a request issued then), a success at its answer (the service
    answered then: a request that hung through a freeze is answered after it)."""
    return sample.at if not sample.ok else sample.at + sample.latency_ms / 1000


def _with_slow_as_failures(samples: list[Sample]) -> list[Sample]:
    """Each success slower than :data:`SLOW_SUCCESS_MS` as a failure at its start (class
    ``slow``) followed by its success at its answer."""
    found = []
    for sample in samples:
        if sample.ok and sample.latency_ms > SLOW_SUCCESS_MS:
            found.append(Sample(sample.kind, sample.at, False, 0.0, "slow"))
        found.append(sample)
    return found


def outage_windows(samples: list[Sample], end: float) -> list[dict[str, Any]]:
    """Maximal spans in which the authority was down, each from its first failure to recovery.

    Each signal (``head``: the state key answers a HEAD; ``canary``: a canary
    object can be written and its bytes read back) is down from a failed sample
    to its next successful sample. The authority is down while either signal
    is: a server whose metadata answers while object data cannot be read (a
    restarted S3 server before its volumes register) is not serving OpenTofu.
    """
    down: dict[str, bool] = {}
    windows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for sample in sorted(_with_slow_as_failures(samples), key=_moment):
        down[sample.kind] = not sample.ok
        if not sample.ok:
            if current is None:
                current = {
                    "start": _moment(sample),
                    "errors": {},
                    "signals": [],
                    "first_seen_s": {},
                }
            if sample.error:
                current["errors"][sample.error] = current["errors"].get(sample.error, 0) + 1
                # when each error class first appeared, in seconds into the window
                current["first_seen_s"].setdefault(
                    sample.error, round(_moment(sample) - current["start"], 3)
                )
            if sample.kind not in current["signals"]:
                current["signals"].append(sample.kind)
        elif current is not None and not any(down.values()):
            current["end"] = _moment(sample)
            windows.append(current)
            current = None
    if current is not None:
        current["end"] = end
        current["open"] = True
        windows.append(current)
    for window in windows:
        window["ms"] = round((window["end"] - window["start"]) * 1000, 1)
        window.setdefault("open", False)
    return windows


def coverage(
    samples: list[Sample], started_at: float, stopped_at: float, prober_errors: int = 0
) -> dict[str, Any]:
    """How well the HEAD sampler watched: the largest unwatched gap and samples lost.

    A gap runs from one HEAD sample's answer (or failure) to the next
    sample's start, from the prober's start to its first sample, and from the last
    sample's answer to the end of measurement; a request in flight is watching, so a
    hung request is not a gap (it is an outage, when it finally answers: slow).
    """
    heads = sorted((s for s in samples if s.kind == "head"), key=lambda s: s.at)
    largest = 0.0
    previous_end = started_at
    for sample in heads:
        largest = max(largest, sample.at - previous_end)
        previous_end = max(previous_end, sample.at + sample.latency_ms / 1000)
    # the time from the last sample's answer to the end of measurement is unwatched too
    largest = max(largest, stopped_at - previous_end)
    if not heads:
        largest = max(0.0, stopped_at - started_at)
    return {
        "largest_gap_ms": round(largest * 1000, 1),
        "prober_errors": prober_errors,
        "head_samples": len(heads),
    }


def summarize(
    samples: list[Sample],
    started_at: float,
    stopped_at: float,
    fault_started_at: float | None = None,
    fault_ended_at: float | None = None,
    budget_ms: float | None = None,
    prober_errors: int = 0,
) -> dict[str, Any]:
    """Counts, outage windows, longest outage, recovery after the fault, error classes, coverage."""
    heads = [s for s in samples if s.kind == "head"]
    canaries = [s for s in samples if s.kind == "canary"]
    windows = outage_windows(samples, stopped_at)
    longest = max((w["ms"] for w in windows), default=0.0)
    recovery_ms: float | None = None
    if fault_ended_at is not None:
        after = [w for w in windows if w["end"] > fault_ended_at and not w["open"]]
        open_after = [w for w in windows if w["end"] > fault_ended_at and w["open"]]
        if open_after:
            recovery_ms = None  # never recovered while we watched
        elif after:
            recovery_ms = round(max(0.0, (after[-1]["end"] - fault_ended_at) * 1000), 1)
        else:
            recovery_ms = 0.0
    errors: dict[str, int] = {}
    for sample in samples:
        if not sample.ok and sample.error:
            errors[sample.error] = errors.get(sample.error, 0) + 1
    head_latencies = sorted(s.latency_ms for s in heads if s.ok)
    return {
        "started_at": started_at,
        "stopped_at": stopped_at,
        "fault_started_at": fault_started_at,
        "fault_ended_at": fault_ended_at,
        "samples": len(samples),
        "head_samples": len(heads),
        "head_failures": sum(1 for s in heads if not s.ok),
        "canary_samples": len(canaries),
        "canary_failures": sum(1 for s in canaries if not s.ok),
        "outages": windows,  # each: start, end, ms, open, errors, first_seen_s, signals
        "longest_outage_ms": longest,
        "recovered": not any(w["open"] for w in windows),
        "recovery_after_fault_ms": recovery_ms,
        "error_classes": errors,
        # HEADs answered "no such key/bucket": the state looked gone, not merely unreachable
        "state_key_missing": sum(
            1 for s in heads if not s.ok and s.error in ("no-such-key", "no-such-bucket")
        ),
        "head_p50_ms": round(head_latencies[len(head_latencies) // 2], 1)
        if head_latencies
        else None,
        "budget_ms": budget_ms,
        "within_budget": None if budget_ms is None else longest <= budget_ms,
        "coverage": coverage(samples, started_at, stopped_at, prober_errors),
    }
