"""Survival evidence: one JSON record per run, chained and signed so that nobody can quietly edit it.

A record says what was done to what and what happened: verdict with reasons,
fault, target and its fingerprint, the fault's own output (proof that it took
effect), prober summary, steady states, durations, data integrity.

Tamper evidence, checked by :func:`verify` (and so by the gate):

* every record is written in one canonical form (sorted keys, two-space
  indent, trailing newline), so an edit of any byte either breaks that form
  or changes the content;
* ``record_sha256`` is the SHA-256 of the canonical record without that field
  and without ``signature``;
* ``signature`` (when a signing key is configured, :mod:`harness.record.signing`)
  is an Ed25519 signature of ``record_sha256``;
* ``previous_sha256`` is the SHA-256 of the previous record file's bytes in
  the directory (a hash chain; ``null`` for the first);
* ``journal_sha256`` is the SHA-256 of the redacted Chaos Toolkit journal
  kept next to the record (``journal_file``).

A chain in one directory cannot show that its newest records were deleted:
the evidence store (:mod:`harness.record.store`) keeps a copy of every record
and the chain head elsewhere, and ``verify`` compares against it.

Records are validated against the versioned JSON Schema shipped in the
package (v2 for new records; v1 records are still read and shown, never
counted by the gate) *before* anything is written: a record that fails goes
to ``rejected/`` with the reason and :class:`RecordRejected` is raised, so
nothing is lost silently. Writes are atomic and serialised by a lock.
Secrets never reach a record or a journal copy (:mod:`harness.record.redact`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import fastjsonschema

from flywheel_chaos import settings
from harness.record.redact import REDACTED, Redactor, known_secrets
from harness.record.signing import Signer, Verifier
from harness.record.verdict import decide

SCHEMA_V1 = "flywheel-chaos/evidence/v1"
SCHEMA_V2 = "flywheel-chaos/evidence/v2"
SCHEMA = SCHEMA_V2
SCHEMA_FILES = {SCHEMA_V1: "evidence-v1.schema.json", SCHEMA_V2: "evidence.schema.json"}
PASSING = frozenset({"survived", "passed"})
REJECTED_DIR = "rejected"

__all__ = [
    "PASSING",
    "REDACTED",
    "SCHEMA",
    "RecordRejected",
    "Verified",
    "canonical",
    "decide",
    "evidence_dir",
    "harness_version",
    "new_record",
    "record_files",
    "redact",
    "self_hash",
    "sha256",
    "verify",
    "write_record",
]


class RecordRejected(Exception):
    """A record failed validation: kept under ``rejected/`` with the reason, not in the chain."""

    def __init__(self, reason: str, path: Path) -> None:
        super().__init__(f"evidence record rejected ({reason}); kept in {path}")
        self.reason = reason
        self.path = path


def harness_version() -> str:
    try:
        return version("flywheel-chaos")
    except PackageNotFoundError:
        return "0+unknown"


def evidence_dir() -> Path:
    return Path(settings.FLYWHEEL_EVIDENCE_DIR.get()).resolve()


def _schema(name: str = SCHEMA) -> dict[str, Any]:
    text = resources.files("harness.record").joinpath(SCHEMA_FILES[name]).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class SchemaViolation(ValueError):
    """A document that breaks its schema: the error jsonschema matches best, and where."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@functools.cache
def _validator(name: str) -> Any:
    """The schema's validator, checked and built once (``jsonschema.validate`` re-checks the
    schema itself on every call: 30 ms a record, most of ``verify``'s time). jsonschema is
    imported here, not with the module: 80 ms that a run whose record the compiled schema
    accepts never needs."""
    import jsonschema

    schema = _schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


SHARED_KEYWORDS = frozenset(
    {
        # assertions that draft-07 and 2020-12 define alike
        "type", "properties", "required", "enum", "const", "pattern", "items",
        "additionalProperties", "propertyNames", "minLength", "maxLength", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties",
        "minItems", "maxItems", "uniqueItems",
        # annotations
        "$id", "$schema", "$comment", "title", "description", "default", "examples",
    }
)  # fmt: skip
"""Keywords the fast path may compile as draft-07 (``format`` is not among them: fastjsonschema
asserts it, jsonschema does not)."""


def _foreign_keywords(node: Any, under_properties: bool = False) -> set[str]:
    """Keywords of a schema outside :data:`SHARED_KEYWORDS` (an array ``items`` counts: it is
    a tuple in draft-07 and an error in 2020-12)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if under_properties:  # property names, not keywords
                found |= _foreign_keywords(value)
                continue
            if key not in SHARED_KEYWORDS or (key == "items" and not isinstance(value, dict)):
                found.add(key)
            found |= _foreign_keywords(value, under_properties=key == "properties")
    elif isinstance(node, list):
        for item in node:
            found |= _foreign_keywords(item)
    return found


@functools.cache
def _compiled(name: str) -> Any:
    """The schema compiled to Python by fastjsonschema (the fast path for valid records), or
    None when the schema uses a keyword draft-07 and 2020-12 do not define alike: then
    jsonschema alone judges, so the fast path can never accept what jsonschema refuses."""
    schema = _schema(name)
    if _foreign_keywords(schema):
        return None
    return fastjsonschema.compile({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})


def validate(document: Any, name: str) -> None:
    """Raise :class:`SchemaViolation` (jsonschema's best-matching error) when ``document``
    breaks schema ``name`` (``KeyError`` for an unknown schema).

    A record the compiled schema accepts is valid; one it refuses is judged (and its
    error worded) by jsonschema, which has the last word."""
    compiled = _compiled(name)
    if compiled is not None:
        try:
            compiled(document)
            return
        except fastjsonschema.JsonSchemaException:
            pass
    import jsonschema.exceptions

    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "/"
        raise SchemaViolation(error.message, where) from error


def canonical(document: Any) -> bytes:
    return (
        json.dumps(document, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    ).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def self_hash(record: dict[str, Any]) -> str:
    return sha256(
        canonical({k: v for k, v in record.items() if k not in ("record_sha256", "signature")})
    )


def redact(document: Any, secrets: Mapping[str, Any] | None = None) -> Any:
    """A copy with secret-named fields, URL user-info and every known secret value replaced."""
    return Redactor(known_secrets(secrets)).document(document)


def new_record(**fields: Any) -> dict[str, Any]:
    from harness.record.verdict import RULES_VERSION  # the rules this harness judges by

    return {
        "schema": SCHEMA,
        "rules_version": RULES_VERSION,
        "id": uuid.uuid4().hex[:12],
        "kind": "experiment",
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
        "host": socket.gethostname(),
        "harness_version": harness_version(),
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


def _reject(
    target: Path, name: str, document: dict[str, Any], journal: bytes | None, reason: str
) -> RecordRejected:
    folder = target / REJECTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        folder / f"{name}.json",
        canonical({"rejected_because": reason, "record": document}),
    )
    if journal is not None:
        _atomic_write(folder / f"{name}.journal.json", journal)
    return RecordRejected(reason, folder / f"{name}.json")


def write_record(
    record: dict[str, Any],
    directory: Path | None = None,
    journal: dict[str, Any] | None = None,
    redactor: Redactor | None = None,
    signer: Signer | None = None,
) -> Path:
    """Validate, redact, chain, sign and write ``record`` (and its journal copy); returns its path.

    Validation comes first: a record that fails it is written to
    ``rejected/`` with the reason, nothing enters the chain, and
    :class:`RecordRejected` is raised. ``redactor`` defaults to one built from
    every known secret (environment, boto profiles, kubeconfig).
    """
    target = directory or evidence_dir()
    scrub = redactor or Redactor(known_secrets())
    with _locked(target):
        existing = record_files(target)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{record.get('fault') or record.get('kind')}-{record.get('id')}"
        # the journal first: secrets it holds under secret-named keys are then known
        # to the redactor when the record (which may quote them) is redacted
        journal_bytes = canonical(scrub.document(journal)) if journal is not None else None
        document = scrub.document(dict(record))
        if journal_bytes is not None:
            document["journal_file"] = f"{name}.journal.json"
            document["journal_sha256"] = sha256(journal_bytes)
        else:
            document.setdefault("journal_file", None)
            document.setdefault("journal_sha256", None)
        document["previous_sha256"] = sha256(existing[-1].read_bytes()) if existing else None
        document.pop("signature", None)
        document["record_sha256"] = self_hash(document)
        if signer is not None:
            document["signature"] = signer.sign(document["record_sha256"])
        try:
            validate(document, str(document.get("schema", SCHEMA)))
        except (SchemaViolation, KeyError) as exc:
            reason = (
                f"schema: {exc.message} at {exc.path}"
                if isinstance(exc, SchemaViolation)
                else f"unknown schema {document.get('schema')!r}"
            )
            raise _reject(target, name, document, journal_bytes, reason) from exc
        if journal_bytes is not None:
            _atomic_write(target / f"{name}.journal.json", journal_bytes)
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

    @property
    def schema(self) -> str:
        return str((self.record or {}).get("schema", ""))


def verify(directory: Path | None = None, verifier: Verifier | None = None) -> list[Verified]:
    """Read every record in chain order and check form, schema, hashes, chain and signatures.

    With ``verifier``, every v2 record must carry a valid signature by its key.
    """
    target = directory or evidence_dir()
    results: list[Verified] = []
    previous: bytes | None = None
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
            schema_name = str(record.get("schema", ""))
            if schema_name not in SCHEMA_FILES:
                problems.append(f"unknown schema {schema_name!r}")
            else:
                try:
                    validate(record, schema_name)
                except SchemaViolation as exc:
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
            bundle = record.get("rca")
            if isinstance(bundle, dict) and bundle.get("file"):
                bundle_path = target / str(bundle["file"])
                if not bundle_path.exists():
                    problems.append(f"RCA bundle {bundle['file']} is missing")
                elif sha256(bundle_path.read_bytes()) != bundle.get("sha256"):
                    problems.append(f"RCA bundle {bundle['file']} does not match its sha256")
            if verifier is not None and schema_name == SCHEMA_V2:
                wrong = verifier.problem(str(record.get("record_sha256")), record.get("signature"))
                if wrong:
                    problems.append(f"signature: {wrong}")
        results.append(Verified(path, record, problems))
        previous = data
    return results
