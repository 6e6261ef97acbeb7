"""Writing a record the whole way: fingerprint, signature, the chain, then the evidence store.

:func:`record` is what every writer of evidence calls (the evidence control,
``guard --record``): it signs with the configured key, writes the record
(validated first; :class:`~harness.record.evidence.RecordRejected` when it
fails) and publishes the chain head to the store when one is configured. A
store that cannot be reached never loses the record: it stays in the
directory, the result says the head was not published, and ``evidence push``
publishes it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_chaos.s3.authority import StateAuthority
from flywheel_chaos.s3.checks import error_of
from harness.record.evidence import evidence_dir, new_record, write_record
from harness.record.posture import Target, fingerprint, read_target
from harness.record.redact import Redactor
from harness.record.signing import load_signer
from harness.record.store import load_store, publish

if TYPE_CHECKING:  # the guard's module (and its HCL parser) is not needed to write a record
    from harness.guard import GuardReport


@dataclass(frozen=True)
class Recorded:
    path: Path
    store: str | None
    """None without a store; else what happened to the chain head."""
    published: bool


def target_fingerprint(authority: StateAuthority, namespace: str = "") -> dict[str, Any]:
    """The live fingerprint of ``authority`` and its workloads (``error`` when unreadable)."""
    return fingerprint(
        read_target(Target.from_env(namespace)),
        authority.endpoint,
        authority.bucket,
        authority.key,
    )


def record(
    document: dict[str, Any],
    journal: dict[str, Any] | None = None,
    redactor: Redactor | None = None,
    directory: Path | None = None,
) -> Recorded:
    """Sign, write and publish ``document``; see the module docstring."""
    folder = directory or evidence_dir()
    path = write_record(document, folder, journal=journal, redactor=redactor, signer=load_signer())
    try:
        store = load_store()
        if store is None:
            return Recorded(path, None, False)
        result = publish(folder, store, load_signer())
    except Exception as exc:  # the record is safe in the directory; say what was not done
        return Recorded(
            path,
            f"the chain head was NOT published to the evidence store ({exc}); "
            "run 'flywheel-chaos evidence push' when it is reachable",
            False,
        )
    return Recorded(
        path, f"published to {result['store']} ({len(result['uploaded'])} file(s))", True
    )


def record_guard(authority: StateAuthority, report: GuardReport) -> Recorded:
    """Write ``report`` as evidence: the record the gate's pre-mutation row reads."""
    return record(
        new_record(
            kind="guard",
            fault="guard",
            verdict="passed" if report.ok else "failed",
            reasons=[error_of(c)["message"] for c in report.checks if not c["ok"]],
            target={
                "endpoint": authority.endpoint,
                "bucket": authority.bucket,
                "key": authority.key,
            },
            fingerprint=target_fingerprint(authority),
            checks=[{k: c[k] for k in ("name", "ok", "duration_ms")} for c in report.checks],
        )
    )
