"""Survival evidence: one JSON record per run, chained so that nobody can quietly edit it.

A record says what was done to what and what happened: verdict with reasons,
fault, target, prober summary, steady states, durations, data integrity.

Tamper evidence, checked by :func:`verify` (and so by the gate):

* every record is written in one canonical form (sorted keys, two-space
  indent, trailing newline), so an edit of any byte either breaks that form
  or changes the content;
* ``record_sha256`` is the SHA-256 of the canonical record without that field;
* ``previous_sha256`` is the SHA-256 of the previous record file's bytes in
  the directory (a hash chain; ``null`` for the first);
* ``journal_sha256`` is the SHA-256 of the redacted Chaos Toolkit journal
  kept next to the record (``journal_file``).

Records are validated against the versioned JSON Schema shipped in the
package on write and on read; writes are atomic and serialised by a lock.
Secrets never reach a record or a journal copy: credential-looking settings
and the values of secret variables are replaced by ``"***"``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = "flywheel-chaos/evidence/v1"
REDACTED = "***"
_SECRET_NAME = re.compile(
    r"secret|password|passwd|token|credential|access_key|accesskey|private_key|api_key", re.I
)
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def evidence_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_EVIDENCE_DIR") or "evidence").resolve()


def _schema() -> dict[str, Any]:
    text = resources.files("harness.record").joinpath("evidence.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def canonical(document: Any) -> bytes:
    return (
        json.dumps(document, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    ).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def self_hash(record: dict[str, Any]) -> str:
    return sha256(canonical({k: v for k, v in record.items() if k != "record_sha256"}))


def secret_values() -> list[str]:
    """Values that must never be written: credentials in the environment."""
    values = [os.environ.get(name, "") for name in _SECRET_ENV]
    values += [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6]
    return sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True)


def redact(document: Any, secrets: list[str] | None = None) -> Any:
    """A copy with credential-looking settings and known secret values replaced."""
    known = secret_values() if secrets is None else secrets

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            if key == "secrets":
                return {k: REDACTED for k in value}
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key and _SECRET_NAME.search(key) and value:
                return REDACTED
            for secret in known:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        return value

    return walk(document)


def decide(
    journal: dict[str, Any],
    summary: dict[str, Any] | None,
    fault_actions: list[dict[str, Any]],
    refused: str | None,
) -> tuple[str, list[str]]:
    """The verdict of a run and the reasons for it."""
    reasons: list[str] = []
    status = journal.get("status")
    steady = journal.get("steady_states") or {}
    before = (steady.get("before") or {}).get("steady_state_met")
    after = (steady.get("after") or {}).get("steady_state_met")
    if refused:
        return "aborted", [refused]
    if status in ("interrupted", "aborted"):
        return "aborted", [f"the run was {status}"]
    if before is False:
        return "error", ["the steady state did not hold before the fault: nothing was proven"]
    failed = [a["name"] for a in fault_actions if a.get("status") != "succeeded"]
    if failed:
        return "error", [f"fault action(s) failed: {', '.join(str(f) for f in failed)}"]
    if summary is None:
        return "error", ["no survival measurement"]
    if journal.get("deviated") or after is False:
        reasons.append("the steady state did not hold after the fault")
    if summary.get("within_budget") is False:
        reasons.append(
            f"longest outage {summary['longest_outage_ms']:.0f} ms exceeds the budget {summary['budget_ms']:.0f} ms"
        )
    if not summary.get("recovered"):
        reasons.append("the state authority had not recovered when measurement ended")
    if summary.get("state_key_missing"):
        # the RustFS incident's shape: a plan at that moment would have seen an empty state
        reasons.append(
            f"the state key was reported missing {summary['state_key_missing']} time(s) "
            "while the fault was live (NoSuchKey/NoSuchBucket, not unreachable)"
        )
    for overlap in (o for a in fault_actions for o in a.get("volume_overlap") or []):
        # two servers on one single-writer data directory: the proof is void
        reasons.append(
            f"replacement pod {overlap['replacement_pod']} ran on ReadWriteOnce claim "
            f"{overlap['claim']} for {overlap['overlap_s']:.1f} s while {overlap['deleted_pod']} "
            "still held it (two writers on one volume; use ReadWriteOncePod or a StatefulSet)"
        )
    if reasons:
        return "not-survived", reasons
    if not fault_actions:
        return "survived", ["steady state held; no fault action ran"]
    return "survived", [
        f"steady state held; longest outage {summary['longest_outage_ms']:.0f} ms within budget"
    ]


def new_record(**fields: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": uuid.uuid4().hex[:12],
        "kind": "experiment",
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
        "host": socket.gethostname(),
        "dry_run": False,
        "reasons": [],
        **fields,
    }


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def record_files(directory: Path) -> list[Path]:
    """Record files in chain order (their names start with a UTC timestamp)."""
    return sorted(p for p in directory.glob("*.json") if not p.name.endswith(".journal.json"))


def _atomic_write(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(
    record: dict[str, Any], directory: Path | None = None, journal: dict[str, Any] | None = None
) -> Path:
    """Validate, redact, chain and write ``record`` (and its journal copy); returns its path."""
    target = directory or evidence_dir()
    with _locked(target):
        existing = record_files(target)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{record.get('fault') or record.get('kind')}-{record['id']}"
        document = redact(dict(record))
        if journal is not None:
            journal_bytes = canonical(redact(journal))
            journal_path = target / f"{name}.journal.json"
            _atomic_write(journal_path, journal_bytes)
            document["journal_file"] = journal_path.name
            document["journal_sha256"] = sha256(journal_bytes)
        else:
            document.setdefault("journal_file", None)
            document.setdefault("journal_sha256", None)
        document["previous_sha256"] = sha256(existing[-1].read_bytes()) if existing else None
        document["record_sha256"] = self_hash(document)
        jsonschema.validate(document, _schema())
        path = target / f"{name}.json"
        _atomic_write(path, canonical(document))
        return path


@dataclass
class Verified:
    """One record as read back, with what is wrong with it (nothing when ``ok``)."""

    path: Path
    record: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(directory: Path | None = None) -> list[Verified]:
    """Read every record in chain order and check form, schema, hashes and chain."""
    target = directory or evidence_dir()
    results: list[Verified] = []
    previous: bytes | None = None
    schema = _schema()
    for path in record_files(target):
        data = path.read_bytes()
        problems: list[str] = []
        record: dict[str, Any] | None = None
        try:
            record = json.loads(data)
        except ValueError as exc:
            problems.append(f"not JSON: {exc}")
        if record is not None and not isinstance(record, dict):
            problems.append("not a JSON object")
            record = None
        if record is not None:
            try:
                jsonschema.validate(record, schema)
            except jsonschema.ValidationError as exc:
                problems.append(f"schema: {exc.message}")
            if canonical(record) != data:
                problems.append("not in canonical form (edited by hand?)")
            if record.get("record_sha256") != self_hash(record):
                problems.append("record_sha256 does not match its content")
            expected_previous = sha256(previous) if previous is not None else None
            if record.get("previous_sha256") != expected_previous:
                problems.append("previous_sha256 does not match the previous record (chain broken)")
            journal_file = record.get("journal_file")
            if journal_file:
                journal_path = target / str(journal_file)
                if not journal_path.exists():
                    problems.append(f"journal copy {journal_file} is missing")
                elif sha256(journal_path.read_bytes()) != record.get("journal_sha256"):
                    problems.append(f"journal copy {journal_file} does not match journal_sha256")
        results.append(Verified(path, record, problems))
        previous = data
    return results
