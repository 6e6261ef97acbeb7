"""The checks of a state authority, each one call of its own: the probes and the guard run them.

Each ``check_*`` takes a resolved :class:`~flywheel_chaos.s3.authority.StateAuthority` and
returns a JSON-serialisable dict, or raises
:class:`~flywheel_chaos.s3.errors.StateAuthorityError`. :data:`CHECKS` is the table the guard,
the gate and the combined probe run in order (:func:`run_checks`).

The protected state key is only ever read with HEAD. The checks write only under
``_flywheel-chaos/`` and remove what they wrote, even when they fail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import botocore.exceptions

from flywheel_chaos.s3.authority import CANARY_PREFIX, StateAuthority
from flywheel_chaos.s3.client import call_with_retries, s3_client
from flywheel_chaos.s3.errors import ErrorRecord, StateAuthorityError, classify

__all__ = [
    "CHECKS",
    "CheckResult",
    "CheckSpec",
    "check_bucket_listed",
    "check_bucket_reachable",
    "check_canary_round_trip",
    "check_lock_exclusive",
    "check_state_key",
    "check_versioning",
    "error_of",
    "run_checks",
]

logger = logging.getLogger("flywheel_chaos.s3")

MAX_CANARY_BYTES = 64 * 1024
DELETE_VISIBLE_S = 2.0
_CLEANUP_BUDGET_S = 3.0


def _run_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def _canary_key(kind: str) -> str:
    return f"{CANARY_PREFIX}{kind}/{_run_id()}"


def check_bucket_listed(authority: StateAuthority) -> dict[str, Any]:
    response = call_with_retries(authority, "list-buckets", lambda c: c.list_buckets())
    names = [b["Name"] for b in response.get("Buckets", [])]
    if authority.bucket not in names:
        raise StateAuthorityError(
            "no-such-bucket",
            "NotListed",
            f"list-buckets at {authority.endpoint} does not list {authority.bucket!r} "
            f"({len(names)} bucket(s) listed)",
        )
    return {"bucket": authority.bucket, "buckets_listed": len(names)}


def check_bucket_reachable(authority: StateAuthority) -> dict[str, Any]:
    response = call_with_retries(
        authority,
        "head-bucket",
        lambda c: c.head_bucket(Bucket=authority.bucket),
        subject=f"bucket {authority.bucket!r}",
    )
    region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    return {"bucket": authority.bucket, "region": region or authority.region}


def check_state_key(authority: StateAuthority) -> dict[str, Any]:
    if not authority.key:
        raise StateAuthorityError(
            "other", "configuration", "no state key configured", "set TOFU_STATE_KEY or pass key"
        )
    if authority.key.startswith(CANARY_PREFIX):
        raise StateAuthorityError(
            "other",
            "configuration",
            f"state key {authority.key!r} is under the harness's canary prefix",
            "point TOFU_STATE_KEY at a real state object",
        )
    deadline = time.monotonic() + authority.timeout_s
    try:
        head = call_with_retries(
            authority,
            "head-state-key",
            lambda c: c.head_object(Bucket=authority.bucket, Key=authority.key),
            deadline=deadline,
            subject=f"s3://{authority.bucket}/{authority.key}",
        )
    except StateAuthorityError as exc:
        if exc.error_class == "no-such-key" and time.monotonic() < deadline:
            # HEAD cannot tell a missing key from a missing bucket: ask the bucket.
            try:
                call_with_retries(
                    authority,
                    "head-bucket",
                    lambda c: c.head_bucket(Bucket=authority.bucket),
                    deadline=deadline,
                    subject=f"bucket {authority.bucket!r}",
                )
            except StateAuthorityError as bucket_exc:
                if bucket_exc.error_class == "no-such-bucket":
                    raise bucket_exc from exc
        raise
    modified = head.get("LastModified")
    return {
        "bucket": authority.bucket,
        "key": authority.key,
        "size": int(head.get("ContentLength", 0)),
        "etag": str(head.get("ETag", "")).strip('"'),
        "last_modified": modified.isoformat() if modified is not None else None,
        "version_id": head.get("VersionId"),
    }


def _delete_quietly(authority: StateAuthority, key: str, version_ids: list[str | None]) -> bool:
    """Remove what a probe wrote under the canary prefix; True if all went."""
    if not key.startswith(CANARY_PREFIX):  # never, whatever a caller passes
        raise StateAuthorityError(
            "other", "guard", f"refusing to delete {key!r} outside {CANARY_PREFIX}"
        )
    ok = True
    for version_id in version_ids or [None]:
        kwargs: dict[str, Any] = {"Bucket": authority.bucket, "Key": key}
        if version_id and version_id != "null":
            kwargs["VersionId"] = version_id
        try:
            call_with_retries(
                authority,
                "cleanup-delete",
                lambda c, kw=kwargs: c.delete_object(**kw),  # type: ignore[misc]
                deadline=time.monotonic() + _CLEANUP_BUDGET_S,
            )
        except StateAuthorityError as exc:
            ok = False
            logger.warning("could not clean up canary %s: %s", key, exc)
    return ok


def check_canary_round_trip(authority: StateAuthority, size_bytes: int = 1024) -> dict[str, Any]:
    if not 1 <= size_bytes <= MAX_CANARY_BYTES:
        raise StateAuthorityError(
            "other",
            "configuration",
            f"canary size {size_bytes} is outside 1..{MAX_CANARY_BYTES} bytes",
            "use the default 1024",
        )
    key = _canary_key("canary")
    body = os.urandom(size_bytes)
    digest = hashlib.sha256(body).hexdigest()
    deadline = time.monotonic() + authority.timeout_s
    timings: dict[str, float] = {}
    written: list[str | None] = []
    deleted = False

    def timed(name: str, call: Callable[[Any], Any]) -> Any:
        started = time.monotonic()
        try:
            return call_with_retries(
                authority, f"canary-{name}", call, deadline=deadline, subject=key
            )
        finally:
            timings[f"{name}_ms"] = round((time.monotonic() - started) * 1000, 1)

    try:
        put = timed("put", lambda c: c.put_object(Bucket=authority.bucket, Key=key, Body=body))
        written.append(put.get("VersionId"))
        got = timed("get", lambda c: c.get_object(Bucket=authority.bucket, Key=key))
        try:
            data = got["Body"].read()
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise classify(exc, authority, subject=key) from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise StateAuthorityError(
                "integrity-mismatch",
                "SHA256",
                f"canary {key} read back {len(data)} bytes whose SHA-256 differs from the "
                f"{size_bytes} bytes written",
            )
        version_id = written[0]
        delete_kwargs: dict[str, Any] = {"Bucket": authority.bucket, "Key": key}
        if version_id and version_id != "null":
            delete_kwargs["VersionId"] = version_id
        timed("delete", lambda c: c.delete_object(**delete_kwargs))
        deleted = True
        # Read-after-delete must hold; a server just restarted may take a moment
        # (SeaweedFS seen here), so HEAD is retried for at most DELETE_VISIBLE_S.
        visible_by = min(deadline, time.monotonic() + DELETE_VISIBLE_S)
        attempts = 0
        while True:
            attempts += 1
            try:
                timed(
                    "head_after_delete", lambda c: c.head_object(Bucket=authority.bucket, Key=key)
                )
            except StateAuthorityError as exc:
                if exc.error_class != "no-such-key":
                    raise
                break
            if time.monotonic() + 0.1 >= visible_by:
                deleted = False
                raise StateAuthorityError(
                    "integrity-mismatch",
                    "StillPresent",
                    f"canary {key} is still readable {attempts} HEADs after DELETE",
                    "the server does not give read-after-delete consistency",
                )
            time.sleep(0.1)
        timings["head_after_delete_attempts"] = attempts
    finally:
        if written and not deleted:
            _delete_quietly(authority, key, written)
    return {"key": key, "size": size_bytes, "sha256": digest, **timings}


def check_versioning(authority: StateAuthority) -> dict[str, Any]:
    response = call_with_retries(
        authority,
        "get-bucket-versioning",
        lambda c: c.get_bucket_versioning(Bucket=authority.bucket),
        subject=f"bucket {authority.bucket!r}",
    )
    status = response.get("Status") or "Never enabled"
    if status != "Enabled":
        raise StateAuthorityError(
            "versioning-disabled",
            "NeverEnabled" if status == "Never enabled" else status,
            f"bucket {authority.bucket!r} versioning is {status!r}",
        )
    return {"bucket": authority.bucket, "status": status}


@dataclass
class _PutOutcome:
    status: int
    code: str
    version_id: str | None = None
    attempts: int = 1
    ms: float = 0.0


ANSWERED_TRANSIENT: Final = frozenset({500, 502, 503, 504})
"""Statuses a server *answered* that say the write did not happen now (busy, below quorum,
SlowDown): a conditional PUT may be retried after them. A timeout is never retried: the
write may have landed, and the retry would see its own lock as contention."""


def _conditional_put(
    authority: StateAuthority,
    key: str,
    body: bytes,
    read_timeout_s: float = 0.0,
    retry_until: float | None = None,
) -> _PutOutcome:
    """One ``If-None-Match: *`` PUT. Servers serialise contended conditional writes
    (SeaweedFS makes a loser wait about 1 s), so a race may use a longer ``read_timeout_s``
    than the authority's. With ``retry_until`` (a monotonic instant), an answered 5xx is
    retried with the authority's backoff until then, each attempt logged; a second winner
    that such a retry could create is still caught by the race's count."""
    if read_timeout_s > authority.read_timeout_s:
        # half-second steps keep the client cache small
        authority = authority.with_overrides(read_timeout_s=math.ceil(read_timeout_s * 2) / 2)
    client = s3_client(authority)
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        try:
            response = client.put_object(
                Bucket=authority.bucket, Key=key, Body=body, IfNoneMatch="*"
            )
            ms = round((time.monotonic() - started) * 1000, 1)
            return _PutOutcome(200, "OK", response.get("VersionId") or "null", attempt, ms)
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = str(exc.response.get("Error", {}).get("Code", status))
            if status in (409, 412):
                ms = round((time.monotonic() - started) * 1000, 1)
                return _PutOutcome(status, code, None, attempt, ms)
            pause = authority.retry.delay(attempt)
            if (
                retry_until is None
                or status not in ANSWERED_TRANSIENT
                or time.monotonic() + pause >= retry_until
            ):
                raise classify(exc, authority, subject=key) from exc
            logger.info("conditional PUT %s: attempt %d answered %d %s", key, attempt, status, code)
            time.sleep(pause)
        except botocore.exceptions.BotoCoreError as exc:
            raise classify(exc, authority, subject=key) from exc


def _lock_body(run_id: str) -> bytes:
    return json.dumps(
        {"ID": run_id, "Operation": "flywheel-chaos lock probe", "Who": socket.gethostname()}
    ).encode()


def _held_lock_refuses(authority: StateAuthority) -> tuple[_PutOutcome, _PutOutcome]:
    """A fresh lock's conditional PUT wins and a second one gets 412; both removed."""
    key = _canary_key("locks") + ".tflock"
    written: list[str | None] = []
    try:
        first = _conditional_put(authority, key, _lock_body(key))
        if first.status != 200:
            raise StateAuthorityError(
                "lock-not-exclusive",
                first.code,
                f"the first conditional PUT of a fresh lock {key} was refused ({first.status})",
                "the server refuses If-None-Match on a key that does not exist",
            )
        written.append(first.version_id)
        second = _conditional_put(authority, key, _lock_body(key + "-2"))
        if second.status == 200:
            written.append(second.version_id)
            raise StateAuthorityError(
                "lock-not-exclusive",
                "200",
                f"a second If-None-Match: * PUT of the held lock {key} succeeded (expected 412)",
            )
        return first, second
    finally:
        if written:
            _delete_quietly(authority, key, written)


def _race(
    authority: StateAuthority, writers: int, timeout_s: float
) -> list[_PutOutcome | StateAuthorityError]:
    """``writers`` conditional PUTs of one fresh lock, released together by a barrier.

    The race has its own bound (servers serialise contended writers: SeaweedFS lets each
    loser retry in 1 s steps, so 8 racers can take 5 s). A fixed read bound (the race's own),
    not one derived from the time left: the client cache is keyed by its timeouts, and a
    bound that changed from run to run built a cold client for every race.
    """
    deadline = time.monotonic() + timeout_s
    key = _canary_key("locks") + "-race.tflock"
    barrier = threading.Barrier(writers)
    outcomes: list[_PutOutcome | StateAuthorityError] = []
    lock = threading.Lock()
    budget_s = max(authority.read_timeout_s, timeout_s)

    def contender(index: int) -> None:
        try:
            barrier.wait(timeout=max(0.1, deadline - time.monotonic()))
            outcome: _PutOutcome | StateAuthorityError = _conditional_put(
                authority, key, _lock_body(f"{key}#{index}"), budget_s, retry_until=deadline
            )
        except StateAuthorityError as exc:
            outcome = exc
        except threading.BrokenBarrierError:
            outcome = StateAuthorityError(
                "timeout", "barrier", "race contenders did not start in time"
            )
        with lock:
            outcomes.append(outcome)

    threads = [
        threading.Thread(target=contender, args=(i,), name=f"lock-race-{i}", daemon=True)
        for i in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # every contender's own timeouts end it by the deadline (plus a connect)
        thread.join(
            timeout=max(0.0, deadline - time.monotonic()) + authority.attempt_budget_s + 0.5
        )
    winners = [o for o in outcomes if isinstance(o, _PutOutcome) and o.status == 200]
    if winners:
        _delete_quietly(authority, key, [w.version_id for w in winners])
    return outcomes


def check_lock_exclusive(
    authority: StateAuthority, race_writers: int = 8, race_timeout_s: float = 10.0
) -> dict[str, Any]:
    if not 2 <= race_writers <= 32:
        raise StateAuthorityError(
            "other", "configuration", f"race_writers {race_writers} is outside 2..32", "use 8"
        )
    deadline = time.monotonic() + authority.timeout_s
    first, second = _held_lock_refuses(authority)
    if time.monotonic() >= deadline:
        raise StateAuthorityError(
            "timeout", "deadline", "lock check ran out of time before the race"
        )
    race_started = time.monotonic()
    outcomes = _race(authority, race_writers, race_timeout_s)
    winners = [o for o in outcomes if isinstance(o, _PutOutcome) and o.status == 200]
    refused = [o for o in outcomes if isinstance(o, _PutOutcome) and o.status != 200]
    failures = [o for o in outcomes if isinstance(o, StateAuthorityError)]
    if len(winners) > 1:  # a second winner fails it whatever else happened
        raise StateAuthorityError(
            "lock-not-exclusive",
            "200",
            f"{len(winners)} of {race_writers} concurrent If-None-Match: * PUTs succeeded (expected exactly 1)",
        )
    if failures:
        raise failures[0].with_note(f"during a race of {race_writers} conditional PUTs")
    if len(outcomes) < race_writers:
        raise StateAuthorityError(
            "timeout",
            "deadline",
            f"{race_writers - len(outcomes)} race PUT(s) did not finish in time",
        )
    if len(winners) != 1:
        raise StateAuthorityError(
            "lock-not-exclusive",
            "NoWinner",
            f"none of {race_writers} concurrent If-None-Match: * PUTs succeeded (expected exactly 1)",
        )
    racers = sorted(outcomes, key=lambda o: o.ms if isinstance(o, _PutOutcome) else 0.0)
    return {
        "first_put": first.status,
        "second_put": second.status,
        "second_put_code": second.code,
        "race_writers": race_writers,
        "race_winners": len(winners),
        "race_refusals": sorted({o.status for o in refused}),
        "race_retries": sum(o.attempts - 1 for o in winners + refused),
        "race_ms": round((time.monotonic() - race_started) * 1000, 1),
        "racers_ms": [o.ms for o in racers if isinstance(o, _PutOutcome)],
    }


# ------------------------------------------------------------ the suite ---


@dataclass(frozen=True)
class CheckSpec:
    """One named check of the state authority."""

    name: str
    run: Callable[[StateAuthority], dict[str, Any]]


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("list-buckets", check_bucket_listed),
    CheckSpec("head-bucket", check_bucket_reachable),
    CheckSpec("state-key-head", check_state_key),
    CheckSpec("canary-write-read-delete", check_canary_round_trip),
    CheckSpec("versioning-enabled", check_versioning),
    CheckSpec("lock-exclusive", check_lock_exclusive),
)

_ENDPOINT_DOWN = frozenset({"endpoint-unreachable", "timeout"})


class CheckResult(TypedDict):
    """One check's outcome, as the guard, the gate and evidence record it."""

    name: str
    ok: bool
    duration_ms: float
    error: ErrorRecord | None
    """How it failed (None when it passed)."""
    result: dict[str, Any] | None


NO_ERROR: ErrorRecord = {"class": "", "code": "", "message": "", "detail": "", "hint": ""}


def error_of(result: CheckResult) -> ErrorRecord:
    """How a check failed (:data:`NO_ERROR` for one that passed)."""
    return result["error"] or NO_ERROR


def _outcome(
    name: str,
    started: float | None,
    error: StateAuthorityError | None,
    result: dict[str, Any] | None,
) -> CheckResult:
    return CheckResult(
        name=name,
        ok=error is None,
        duration_ms=0.0 if started is None else round((time.monotonic() - started) * 1000, 1),
        error=None if error is None else error.as_dict(),
        result=result,
    )


def _one(
    spec: CheckSpec, authority: StateAuthority
) -> tuple[CheckResult, StateAuthorityError | None]:
    started = time.monotonic()
    try:
        result = spec.run(authority)
    except StateAuthorityError as exc:
        return _outcome(spec.name, started, exc, None), exc
    return _outcome(spec.name, started, None, result), None


def run_checks(authority: StateAuthority) -> list[CheckResult]:
    """Run every check; returns one :class:`CheckResult` per check, in :data:`CHECKS` order.

    The first check (``list-buckets``) runs alone: when the endpoint is unreachable or
    silent, the remaining checks are not attempted (each would only wait for the same dead
    endpoint) and are reported as failed with the same class. Otherwise the others run
    concurrently (they touch different keys: the canary round trip and the lock checks
    each their own under the canary prefix; the race keeps its own eight writers), each
    within its own bounds, so the guard takes as long as its slowest check, not their sum.
    """
    first, down = _one(CHECKS[0], authority)
    if down is not None and down.error_class in _ENDPOINT_DOWN:
        skipped = StateAuthorityError(
            down.error_class, down.code, "not attempted: the endpoint is down", down.hint
        )
        return [first] + [_outcome(spec.name, None, skipped, None) for spec in CHECKS[1:]]
    with ThreadPoolExecutor(max_workers=len(CHECKS) - 1, thread_name_prefix="check") as pool:
        rest = [result for result, _ in pool.map(lambda spec: _one(spec, authority), CHECKS[1:])]
    return [first, *rest]
