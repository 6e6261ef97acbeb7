"""The bake-off's runs: per candidate a lab of its own, the proofs, N runs of every fault.

Every run is ``chaos run`` of a shipped experiment file (no side door), started on a settled
lab, in its own session (Ctrl-C reaches the bake-off, never the run in flight: it finishes
and rolls back). After each run a fault left undone (an intent still recorded) is undone
with ``flywheel-chaos recover``. Finished runs are appended to ``<out>/<candidate>/runs.jsonl``
as they end: ``--resume`` reads it back and runs only what is missing, so no run is counted
twice or lost. When a candidate's runs are done its evidence is verified and the real
``flywheel-chaos gate`` runs against its lab; its exit code and rows are kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubernetes import client, config

from flywheel_chaos import settings
from flywheel_chaos.s3.authority import load_authority
from harness import assets
from harness.bakeoff.plan import Candidate, Fault
from harness.bakeoff.settle import settle
from harness.errors import ConfigError
from harness.lab.cluster import Lab
from harness.lab.paths import LabPaths, free_ports
from harness.lab.stack import stack_dir
from harness.lab.topology import STATE_NAMESPACE
from harness.processes import rss_mib
from harness.record.evidence import canonical, record_files
from harness.record.redact import Redactor, known_secrets

__all__ = ["Bakeoff", "finished_runs"]

RUN_TIMEOUT_S: Final = 900.0
PROOFS: Final = (
    ("guard", "guard"),
    ("backup-restore", "backup-restore"),
    ("tofu-noop-plan", "tofu-noop-plan"),
)
BIN: Final = Path(sys.executable).parent

Event = Callable[[dict[str, Any]], None]


def finished_runs(directory: Path) -> list[dict[str, Any]]:
    """The runs ``runs.jsonl`` holds (each line one finished run; a torn last line is dropped)."""
    path = directory / "runs.jsonl"
    found: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


@dataclass
class Bakeoff:
    out: Path
    candidates: list[Candidate]
    faults: list[Fault]
    runs: int = 5
    extra_runs: dict[str, Any] = field(default_factory=dict)
    """``{"runs": {fault: N}, "candidates": [...]}``: runs per fault that differ from ``runs``
    on those candidates (the gate's faults on the best candidate)."""
    tofu: bool = True
    on_event: Event = lambda event: None
    stop: threading.Event = field(default_factory=threading.Event)

    def manifest(self) -> dict[str, Any]:
        return {
            "candidates": [c.name for c in self.candidates],
            "faults": [f.name for f in self.faults],
            "runs": self.runs,
            "extra_runs": self.extra_runs,
            "tofu": self.tofu,
        }

    def run(self) -> list[dict[str, Any]]:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "bakeoff.json").write_text(json.dumps(self.manifest(), indent=2) + "\n")
        results = []
        for candidate in self.candidates:
            if self.stop.is_set():
                break
            results.append(self.run_candidate(candidate))
        return results

    def planned(self, candidate: Candidate | None = None) -> list[tuple[Fault, int]]:
        extra: dict[str, int] = {}
        if candidate is None or candidate.name in self.extra_runs.get("candidates", []):
            extra = dict(self.extra_runs.get("runs") or {})
        return [
            (fault, index)
            for fault in self.faults
            for index in range(1, extra.get(fault.name, self.runs) + 1)
        ]

    # ----------------------------------------------------------- a candidate ---

    def run_candidate(self, candidate: Candidate) -> dict[str, Any]:
        if not candidate.in_lab:
            raise ConfigError(
                f"candidate {candidate.name}: a bake-off in a real cluster is not supported yet",
                "run it in the lab (topology[:variant]); see docs/bakeoff.md",
            )
        directory = self.out / candidate.slug
        directory.mkdir(parents=True, exist_ok=True)
        lab, started = self._lab(candidate, directory)
        env = self._env(lab, directory)
        done = {(r["fault"], r["index"]) for r in finished_runs(directory)}
        self.on_event({"event": "candidate", "candidate": candidate.name, "lab": started})
        for proof, name in PROOFS:
            if (proof, 1) not in done and not self.stop.is_set():
                self._proof(candidate, directory, env, proof, name)
        for fault, index in self.planned(candidate):
            if self.stop.is_set():
                break
            if (fault.name, index) in done:
                continue
            self._fault_run(candidate, lab, directory, env, fault, index)
        if self.stop.is_set():
            self.on_event(
                {"event": "stopped", "candidate": candidate.name, "lab": str(lab.paths.root)}
            )
            return {"candidate": candidate.name, "stopped": True}
        gate = self._gate(directory, env)
        lab.down(lambda message: None)
        return {"candidate": candidate.name, "stopped": False, "gate": gate}

    def _lab(self, candidate: Candidate, directory: Path) -> tuple[Lab, dict[str, Any]]:
        """The candidate's lab: the one a stopped bake-off left running, else a fresh one."""
        paths = LabPaths(directory / "lab")
        lab = Lab(paths, topology=candidate.name)
        if lab.is_up():
            return lab, {"reused": True, **self._lab_facts(lab)}
        fresh = Lab(paths, topology=candidate.name, ports=free_ports())
        fresh.down(lambda message: None, clean=True)
        t0 = time.monotonic()
        fresh.up(
            lambda message: self.on_event(
                {"event": "lab", "candidate": candidate.name, "message": message}
            )
        )
        facts = {"reused": False, "up_s": round(time.monotonic() - t0, 1), **self._lab_facts(fresh)}
        (directory / "lab.json").write_text(json.dumps(facts, indent=2) + "\n")
        return fresh, facts

    @staticmethod
    def _lab_facts(lab: Lab) -> dict[str, Any]:
        pids = [int(c["pid"]) for c in lab.read_state().get("components", [])] + lab.pod_pids()
        return {"rss_mib": rss_mib(pids), "topology": lab.topology, "slot": lab.ports.slot}

    def _env(self, lab: Lab, directory: Path) -> dict[str, str]:
        env = {**lab.env_values()}
        env[settings.FLYWHEEL_EVIDENCE_DIR.name] = str(directory / "evidence")
        env[settings.FLYWHEEL_STATE_DIR.name] = str(directory / "state")
        if self.tofu and (stack_dir(lab.paths.root) / ".tofu").is_dir():
            env[settings.FLYWHEEL_TOFU_PLAN_STACK.name] = str(stack_dir(lab.paths.root))
        return env

    # --------------------------------------------------------------- the runs ---

    def _chaos(
        self, experiment: str, env: dict[str, str], directory: Path, name: str
    ) -> tuple[int | None, str | None]:
        """``chaos run experiments/<experiment>.yaml`` in its own session; (exit, record file)."""
        evidence = Path(env[settings.FLYWHEEL_EVIDENCE_DIR.name])
        before = {p.name for p in record_files(evidence)} if evidence.is_dir() else set()
        work = directory / "runs"
        work.mkdir(parents=True, exist_ok=True)
        argv = [
            str(BIN / "chaos"), "--log-file", str(work / f"{name}.chaos.log"), "run",
            "--journal-path", str(work / f"{name}.raw-journal.json"),
            str(assets.experiment(experiment)),
        ]  # fmt: skip
        try:
            code: int | None = subprocess.run(
                argv,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                start_new_session=True,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
        self._redact_journal(work, name)
        new = (
            sorted(p.name for p in record_files(evidence) if p.name not in before)
            if evidence.is_dir()
            else []
        )
        return code, (new[-1] if new else None)

    @staticmethod
    def _redact_journal(work: Path, name: str) -> None:
        raw = work / f"{name}.raw-journal.json"
        if raw.exists():
            try:
                document = json.loads(raw.read_text())
                (work / f"{name}.journal.json").write_bytes(
                    canonical(Redactor(known_secrets()).document(document))
                )
            except ValueError:
                pass
            raw.unlink()

    def _cli(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flywheel-chaos"), *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )

    @staticmethod
    def _verdict(env: dict[str, str], record: str | None) -> tuple[str, list[str]]:
        if record is None:
            return "no-record", ["the run wrote no evidence record"]
        try:
            document = json.loads(
                (Path(env[settings.FLYWHEEL_EVIDENCE_DIR.name]) / record).read_text()
            )
        except (OSError, ValueError):
            return "unreadable", [f"{record} cannot be read"]
        return str(document.get("verdict")), list(document.get("reasons") or [])

    def _append(self, directory: Path, line: dict[str, Any]) -> None:
        with (directory / "runs.jsonl").open("a") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.on_event({"event": "run", **line})

    def _proof(
        self, candidate: Candidate, directory: Path, env: dict[str, str], fault: str, name: str
    ) -> None:
        t0 = time.monotonic()
        if fault == "guard":
            result = self._cli(["guard", "--record"], env)
            code: int | None = result.returncode
            evidence = Path(env[settings.FLYWHEEL_EVIDENCE_DIR.name])
            files = record_files(evidence) if evidence.is_dir() else []
            record = files[-1].name if files else None
        else:
            code, record = self._chaos(name, env, directory, f"{fault}-1")
        self._append(
            directory,
            {
                "candidate": candidate.name, "fault": fault, "index": 1, "kind": "proof",
                "exit": code, "record": record, "seconds": round(time.monotonic() - t0, 1),
                **dict(zip(("verdict", "reasons"), self._verdict(env, record), strict=True)),
            },
        )  # fmt: skip

    def _fault_run(
        self,
        candidate: Candidate,
        lab: Lab,
        directory: Path,
        env: dict[str, str],
        fault: Fault,
        index: int,
    ) -> None:
        core = client.CoreV1Api(
            config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
        )
        authority = load_authority(
            endpoint=env["AWS_ENDPOINT_URL_S3"], bucket=env["TOFU_STATE_BUCKET"], key=env["TOFU_STATE_KEY"],
            secrets={"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                     "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]},
            environ={},
        )  # fmt: skip
        self.on_event(
            {"event": "start", "candidate": candidate.name, "fault": fault.name, "index": index}
        )
        settled_s, left = settle(core, STATE_NAMESPACE, authority)
        t0 = time.monotonic()
        code, record = self._chaos(
            fault.experiment, {**env, **fault.env}, directory, f"{fault.name}-{index}"
        )
        seconds = round(time.monotonic() - t0, 1)
        recovered = self._recover_if_needed(env)
        self._append(
            directory,
            {
                "candidate": candidate.name, "fault": fault.name, "index": index, "kind": "fault",
                "experiment": fault.experiment, "exit": code, "record": record, "seconds": seconds,
                "settled_s": settled_s, "unsettled": left, "recovered": recovered,
                **dict(zip(("verdict", "reasons"), self._verdict(env, record), strict=True)),
            },
        )  # fmt: skip

    def _recover_if_needed(self, env: dict[str, str]) -> list[str]:
        """Undo what a run left (an intent file still there): ``flywheel-chaos recover``."""
        intents = Path(env[settings.FLYWHEEL_STATE_DIR.name]) / "intents"
        if not any(intents.glob("*.json")):
            return []
        result = self._cli(["recover", "--json"], env)
        try:
            undone: list[str] = json.loads(result.stdout).get("undone", [])
        except ValueError:
            undone = [f"recover exited {result.returncode}: {result.stderr[-300:]}"]
        return undone

    def _gate(self, directory: Path, env: dict[str, str]) -> dict[str, Any]:
        verify = self._cli(["evidence", "verify", "--json"], env)
        gate = self._cli(["gate", "--json"], env)
        try:
            report: dict[str, Any] = json.loads(gate.stdout)
        except ValueError:
            report = {"mode": "error", "error": gate.stderr[-2000:]}
        kept = {"exit": gate.returncode, "verify_exit": verify.returncode, **report}
        (directory / "gate.json").write_text(json.dumps(kept, indent=2, default=str) + "\n")
        return kept
