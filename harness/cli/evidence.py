"""``flywheel-chaos evidence list | show``: the recorded survival evidence."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from flywheel_chaos import settings
from harness.cli.output import add_command, err, out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK, ConfigError


def _directory(args: argparse.Namespace) -> Path:
    from harness.record.evidence import (
        evidence_dir,  # jsonschema: kept off every command's start-up
    )

    return Path(args.dir) if args.dir else evidence_dir()


def _records(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    from harness.record.evidence import record_files

    for path in record_files(directory):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            found.append((path, {"verdict": "unreadable"}))
    return found


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    directory = _directory(args)
    records = _records(directory)
    if args.json:
        print_json(
            [
                {"file": p.name, **{k: r.get(k) for k in ("id", "fault", "verdict", "recorded_at")}}
                for p, r in records
            ]
        )
        return EXIT_OK
    if not records:
        out.print(f"no evidence in {directory}")
        return EXIT_OK
    table = Table(title=f"evidence in {directory}", title_justify="left")
    for column in ("recorded", "fault", "verdict", "longest outage", "record"):
        table.add_column(column)
    colours = {"survived": "green", "not-survived": "red", "aborted": "yellow", "error": "magenta"}
    for path, record in records:
        verdict = record.get("verdict", "?")
        outage = (record.get("prober") or {}).get("longest_outage_ms")
        table.add_row(
            str(record.get("recorded_at", ""))[:19],
            str(record.get("fault", "")),
            f"[{colours.get(verdict, 'white')}]{verdict}[/]",
            f"{outage / 1000:.1f} s" if isinstance(outage, int | float) else "-",
            path.name,
        )
    out.print(table)
    return EXIT_OK


def _find(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The record ``args.record`` names (a file name, stem or id; ``latest``)."""
    directory = _directory(args)
    records = _records(directory)
    if not records:
        raise ConfigError(
            f"no evidence in {directory}",
            "run an experiment first (chaos run experiments/pod-delete.yaml)",
        )
    wanted = args.record
    journal = getattr(args, "journal", None)
    if journal:
        try:
            named = (json.loads(Path(journal).read_text()).get("flywheel") or {}).get("evidence")
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the journal {journal}: {exc}", "pass the run's --journal-path"
            ) from exc
        if not named:
            raise ConfigError(
                f"the journal {journal} names no evidence record: the run recorded nothing",
                "see the run's log; 'flywheel-chaos evidence list' shows what was recorded",
            )
        wanted = Path(str(named)).name
    if wanted == "latest":
        return records[-1]
    matches = [(p, r) for p, r in records if wanted in (p.name, p.stem, r.get("id"))]
    if not matches:
        raise ConfigError(
            f"no evidence record {wanted!r} in {directory}", "see flywheel-chaos evidence list"
        )
    return matches[-1]


def _expected(args: argparse.Namespace, record: dict[str, Any]) -> int:
    wanted = getattr(args, "expect_verdict", None)
    if wanted and record.get("verdict") != wanted:
        err.print(f"[bold red]error:[/] the verdict is {record.get('verdict')}, expected {wanted}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_show(args: argparse.Namespace, found: tuple[Path, dict[str, Any]] | None = None) -> int:

    path, record = found or _find(args)
    if args.json:
        print_json(record)
        return _expected(args, record)
    prober = record.get("prober") or {}
    out.print(f"[bold]{record.get('experiment')}[/]  ({path.name})")
    out.print(
        f"verdict: [bold]{record.get('verdict')}[/]: {'; '.join(record.get('reasons') or [])}"
    )
    out.print(f"fault: {record.get('fault')}  target: {record.get('target')}")
    effect = record.get("fault_effect")
    if effect:
        taken = "took effect" if effect.get("took_effect") else "did NOT take effect"
        out.print(f"fault {taken}: {effect.get('why')}")
    if record.get("schema") != "flywheel-chaos/evidence/v2":
        out.print("[dim]schema v1: shown, never counted by the gate[/]")
    if prober:
        out.print(
            f"prober: {prober.get('head_samples')} HEAD samples, {prober.get('head_failures')} failed, "
            f"{prober.get('canary_samples')} canaries, {prober.get('canary_failures')} failed; "
            f"longest outage {prober.get('longest_outage_ms', 0) / 1000:.2f} s (budget "
            f"{(prober.get('budget_ms') or 0) / 1000:.0f} s); recovery after the fault "
            f"{prober.get('recovery_after_fault_ms')} ms; errors {prober.get('error_classes')}"
        )
        cover = prober.get("coverage") or {}
        if cover:
            out.print(
                f"prober coverage: largest gap {cover.get('largest_gap_ms')} ms, "
                f"{cover.get('prober_errors')} sample(s) lost to its own errors"
            )
        for window in prober.get("outages", []):
            out.print(
                f"  outage {window['ms'] / 1000:.2f} s{' (still open)' if window.get('open') else ''}: {window.get('errors')}"
                + (
                    f"; first seen at s: {window['first_seen_s']}"
                    if window.get("first_seen_s")
                    else ""
                )
            )
    integrity = record.get("integrity") or {}
    out.print(f"state key unchanged: {integrity.get('state_key_unchanged')}")
    return _expected(args, record)


def _cmd_verify(args: argparse.Namespace) -> int:
    from harness.record.evidence import verify
    from harness.record.signing import load_verifier
    from harness.record.store import StoreError, compare, load_store

    directory = _directory(args)
    verifier = load_verifier(args.public_key)
    results = verify(directory, verifier)
    bad = [r for r in results if not r.ok]
    store = load_store()
    store_problems: list[str] = []
    if store is not None:
        try:
            store_problems = compare(directory, store, verifier)
        except StoreError as exc:
            store_problems = [f"cannot compare with the evidence store: {exc}"]
    notes = []
    if store is None:
        notes.append(
            "no evidence store (FLYWHEEL_EVIDENCE_URL): deleting the newest records, or all but "
            "the first, leaves a valid shorter chain that this cannot detect"
        )
    if verifier is None:
        notes.append("no public key (--public-key): signatures are not checked")
    failed = bool(bad or store_problems)
    if args.json:
        print_json(
            {
                "ok": not failed,
                "records": len(results),
                "problems": [{"record": r.path.name, "problems": r.problems} for r in bad],
                "store": store.url if store else None,
                "store_problems": store_problems,
                "signatures_checked": verifier is not None,
                "notes": notes,
            }
        )
    else:
        for result in bad:
            for problem in result.problems:
                out.print(f"[red]TAMPERED[/] {result.path.name}: {problem}")
        for problem in store_problems:
            out.print(f"[red]STORE[/] {problem}")
        if not failed:
            checked = " and signatures" if verifier else ""
            against = f", matching {store.url}" if store else ""
            out.print(
                f"[green]ok[/]: {len(results)} record(s) in {directory}, chain{checked} intact{against}"
            )
        for note in notes:
            out.print(f"[dim]note:[/] {note}")
    return EXIT_FAILED if failed else EXIT_OK


def _store_or_fail() -> Any:
    from harness.record.store import load_store

    store = load_store()
    if store is None:
        raise ConfigError(
            "no evidence store is configured",
            "set FLYWHEEL_EVIDENCE_URL=s3://BUCKET/PREFIX (and its endpoint/credential variables)",
        )
    return store


def _cmd_push(args: argparse.Namespace) -> int:
    from harness.record.signing import load_signer
    from harness.record.store import StoreError, publish

    directory = _directory(args)
    store = _store_or_fail()
    try:
        result = publish(directory, store, load_signer())
    except StoreError as exc:
        raise ConfigError(f"cannot publish to {store.url}: {exc}", "check the store") from exc
    if args.json:
        print_json(result)
    else:
        out.print(
            f"published {len(result['uploaded'])} file(s) and the chain head "
            f"({result['head']['count']} record(s)) to {result['store']}"
        )
    return EXIT_OK


def _cmd_pull(args: argparse.Namespace) -> int:
    from harness.record.store import StoreError, pull

    directory = _directory(args)
    store = _store_or_fail()
    try:
        fetched = pull(directory, store)
    except StoreError as exc:
        raise ConfigError(f"cannot read {store.url}: {exc}", "check the store") from exc
    if args.json:
        print_json({"store": store.url, "fetched": fetched})
    else:
        out.print(f"fetched {len(fetched)} file(s) from {store.url} into {directory}")
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from harness.record.signing import generate

    private, public = generate(Path(args.out), args.name)
    if args.json:
        print_json({"private_key": str(private), "public_key": str(public)})
    else:
        out.print(f"private key {private} (0600): FLYWHEEL_EVIDENCE_SIGNING_KEY={private}")
        out.print(f"public key  {public}: evidence verify --public-key {public}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.record.report import render_html

    found = _find(args)
    code = _cmd_show(args, found)
    if args.html:
        Path(args.html).write_text(render_html(found[1], found[0].name))
        out.print(f"report written to {args.html}")
    return code


def _cmd_rca(args: argparse.Namespace) -> int:
    import datetime as dt

    from harness.guard import resolve_authority
    from harness.record.evidence import new_record
    from harness.record.rca import collect, disk_view_mode
    from harness.record.recorder import record as write

    try:
        disk_view = disk_view_mode(settings.FLYWHEEL_LAB_DIR.get(), args.disk_view or "")
    except ValueError as exc:
        raise ConfigError(
            str(exc), "--disk-view debug-pod on a real cluster (deploy/components/disk-view)"
        ) from exc
    path, explained = _find(args)
    directory = _directory(args)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    bundle = collect(
        resolve_authority(),
        directory / "rca" / f"rca-{explained.get('id', 'live')}-{stamp}.tar.gz",
        record=explained,
        disk_view=disk_view,
    )
    bundle["file"] = f"rca/{bundle['file']}"
    written = write(
        new_record(
            kind="rca",
            fault=str(explained.get("fault") or "rca"),
            verdict=str(explained.get("verdict") or "error"),
            reasons=[f"RCA of {path.name}, collected after the run"],
            explains=explained.get("id"),
            rca=bundle,
        ),
        directory=directory,
    )
    if args.json:
        print_json({"record": str(written.path), **bundle})
    else:
        out.print(f"RCA bundle {directory / bundle['file']} ({bundle['bytes']} bytes)")
        for note in bundle["notes"]:
            out.print(f"[dim]note:[/] {note}")
        out.print(f"recorded {written.path.name} (kind rca, never counted by the gate)")
    return EXIT_OK


def register_rca(sub: Any, common: argparse.ArgumentParser) -> None:
    rca = add_command(
        sub,
        common,
        "rca",
        help="collect an RCA bundle for a run (pods, logs, events, S3 and disk views, summary)",
    )
    rca.add_argument(
        "record", nargs="?", default="latest", help="file name or id (default: the latest)"
    )
    rca.add_argument(
        "--dir", default=None, help="evidence directory (default: FLYWHEEL_EVIDENCE_DIR)"
    )
    rca.add_argument(
        "--disk-view",
        default=None,
        choices=["auto", "lab", "debug-pod", "off"],
        help="how the disk view is read (default: FLYWHEEL_RCA_DISK_VIEW, else auto: the lab's "
        "directories in a lab, none elsewhere); debug-pod starts a read-only debug pod on each "
        "volume's node (opt-in: deploy/components/disk-view)",
    )
    rca.set_defaults(handler=_cmd_rca)


def register_report(sub: Any, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report", parents=[common], help="human report of a run (terminal, or --html FILE)"
    )
    report.add_argument(
        "record", nargs="?", default="latest", help="file name or id (default: the latest)"
    )
    report.add_argument(
        "--html", default=None, metavar="FILE", help="also write one self-contained HTML page"
    )
    report.add_argument(
        "--dir",
        default=None,
        help="evidence directory (default: FLYWHEEL_EVIDENCE_DIR or evidence/)",
    )
    report.set_defaults(handler=_cmd_report)


def _cmd_init(args: argparse.Namespace) -> int:
    from harness.record.store import StoreError, load_store

    store = load_store()
    if store is None:
        raise ConfigError(
            "no evidence store is configured", "set FLYWHEEL_EVIDENCE_URL=s3://BUCKET/PREFIX"
        )
    deadline, attempt = time.monotonic() + max(0.0, args.wait), 0
    while True:
        attempt += 1
        try:
            done = store.ensure_bucket()
            break
        except StoreError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConfigError(
                    f"cannot initialise {store.url} (attempt {attempt}): {exc}",
                    "check the endpoint and the identity's rights (create bucket, versioning)",
                ) from exc
            err.print(f"[dim]evidence init[/] attempt {attempt}: {exc}; retrying")
            time.sleep(min(2.0, left))
    out.print(f"{store.url}: " + ("; ".join(done) if done else "ready (nothing to do)"))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    evidence = sub.add_parser("evidence", parents=[common], help="recorded survival evidence")
    evidence.add_argument(
        "--dir",
        default=None,
        help="evidence directory (default: FLYWHEEL_EVIDENCE_DIR or evidence/)",
    )
    verbs = evidence.add_subparsers(
        dest="evidence_command", metavar="ACTION", required=True, parser_class=type(evidence)
    )
    listing = verbs.add_parser("list", parents=[common], help="one line per record")
    listing.set_defaults(handler=_cmd_list)
    show = verbs.add_parser("show", parents=[common], help="one record in detail")
    show.add_argument(
        "record", nargs="?", default="latest", help="file name or id (default: the latest)"
    )
    show.set_defaults(handler=_cmd_show)
    show.add_argument(
        "--journal",
        default=None,
        metavar="FILE",
        help="show the record that this chaos run journal names (its flywheel.evidence)",
    )
    show.add_argument(
        "--expect-verdict",
        default=None,
        metavar="VERDICT",
        help="exit 1 unless the record's verdict is VERDICT (e.g. not-survived for the interim)",
    )
    check = add_command(
        verbs,
        common,
        "verify",
        help="check every record's form, hashes, chain, signatures and the evidence store",
    )
    check.add_argument(
        "--public-key",
        default=None,
        metavar="FILE",
        help="check signatures (default: FLYWHEEL_EVIDENCE_PUBLIC_KEY)",
    )
    check.set_defaults(handler=_cmd_verify)
    push = verbs.add_parser(
        "push", parents=[common], help="publish records and the chain head to the evidence store"
    )
    push.set_defaults(handler=_cmd_push)
    pull = verbs.add_parser(
        "pull", parents=[common], help="fetch records the directory lacks from the evidence store"
    )
    pull.set_defaults(handler=_cmd_pull)
    init = verbs.add_parser(
        "init",
        parents=[common],
        help="create the evidence store's bucket with versioning (idempotent)",
    )
    init.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry while the store does not answer yet, up to SECONDS (default: no retry)",
    )
    init.set_defaults(handler=_cmd_init)
    keygen = verbs.add_parser(
        "keygen", parents=[common], help="make an Ed25519 key pair for signing records"
    )
    keygen.add_argument("--out", default=".", metavar="DIR", help="where to write (default .)")
    keygen.add_argument(
        "--name", default="evidence", help="file names NAME.key and NAME.pub (default evidence)"
    )
    keygen.set_defaults(handler=_cmd_keygen)
