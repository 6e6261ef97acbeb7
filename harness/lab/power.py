"""A lab node's power supervisor: the lab's hypervisor for one node.

``python -m harness.lab.power --node bumble --lab-dir .lab -- AGENT ARGV...``
runs the node agent as its child (own process group) and enacts power
requests written to ``<lab>/nodes/<node>/power.request`` (the contract is
documented in :mod:`flywheel_chaos.power`, whose node faults write them):

* ``freeze``: SIGSTOP the agent and every pod process group: a hung node
  (no heartbeats, no answers, TCP connections left open);
* ``thaw``: SIGCONT them;
* ``off``: SIGKILL the agent and every pod process group: a power loss; the
  pods' objects stay in the API as they would;
* ``on``: start the agent again; it re-admits the pods still bound to the
  node and starts their containers, as a kubelet does after a reboot.

It answers each request by writing ``power.state`` with the request's id.
An agent that dies on its own is started again after a second, as systemd
would restart a kubelet. SIGTERM stops the agent (which stops its pods) and
then the supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flywheel_chaos.power import POWER_REQUEST, POWER_STATE
from harness.processes import pid_alive, stop_pid_group

logger = logging.getLogger("flywheel_chaos.lab.power")

POLL_S = 0.1


class Supervisor:
    def __init__(self, node: str, lab_dir: Path, argv: list[str], log_path: Path) -> None:
        self.node = node
        self.directory = lab_dir / "nodes" / node
        self.directory.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self.log_path = log_path
        self.agent: subprocess.Popen[bytes] | None = None
        self.state = "off"
        self.handled = ""
        self.stopping = False
        self.killed: list[int] = []

    # ------------------------------------------------------------ pids ---

    def pod_pids(self) -> list[int]:
        pids = []
        for pid_file in self.directory.glob("pods/*/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pid_file.read_text()))
        return [p for p in pids if pid_alive(p)]

    def _signal_all(self, signum: int) -> list[int]:
        hit = []
        targets = [self.agent.pid] if self.agent is not None else []
        for pid in [*targets, *self.pod_pids()]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)
                hit.append(pid)
        return hit

    # ---------------------------------------------------------- states ---

    def start_agent(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "agent.ready").unlink()
        log = self.log_path.open("ab")
        self.agent = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.state = "running"
        logger.info("node %s: agent started (pid %d)", self.node, self.agent.pid)

    def enact(self, want: str) -> None:
        if want == "freeze" and self.state == "running":
            self._signal_all(signal.SIGSTOP)
            self.state = "frozen"
        elif want == "thaw" and self.state == "frozen":
            self._signal_all(signal.SIGCONT)
            self.state = "running"
        elif want == "off" and self.state in ("running", "frozen"):
            self.killed = self._signal_all(signal.SIGKILL)
            if self.agent is not None:
                self.agent.wait(timeout=10)
            deadline = time.monotonic() + 5
            while self.pod_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid_file in self.directory.glob("pods/*/*.pid"):
                pid_file.unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / "agent.ready").unlink()
            self.agent = None
            self.state = "off"
        elif want == "on":
            if self.state == "frozen":
                self._signal_all(signal.SIGCONT)
                self.state = "running"
            elif self.state == "off":
                self.start_agent()
        logger.info("node %s: %s -> %s", self.node, want, self.state)

    def write_state(self) -> None:
        document: dict[str, Any] = {
            "id": self.handled,
            "state": self.state,
            "agent_pid": self.agent.pid if self.agent is not None else None,
            "pods": self.pod_pids(),
            "killed": self.killed,
            "changed_at": time.time(),
        }
        tmp = self.directory / f".{POWER_STATE}.tmp"
        tmp.write_text(json.dumps(document))
        os.replace(tmp, self.directory / POWER_STATE)

    def poll(self) -> None:
        try:
            request = json.loads((self.directory / POWER_REQUEST).read_text())
        except (OSError, ValueError):
            request = {}
        if request.get("id") and request["id"] != self.handled:
            self.enact(str(request.get("want")))
            self.handled = str(request["id"])
            self.write_state()
        if self.state == "running" and self.agent is not None and self.agent.poll() is not None:
            logger.warning(
                "node %s: agent exited %s; starting it again in 1 s",
                self.node,
                self.agent.returncode,
            )
            time.sleep(1.0)
            if not self.stopping:
                self.start_agent()
                self.write_state()

    def run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / POWER_REQUEST).unlink()
        self.start_agent()
        self.write_state()
        while not self.stopping:
            self.poll()
            time.sleep(POLL_S)
        self._signal_all(signal.SIGCONT)  # a frozen agent must hear SIGTERM
        if self.agent is not None and self.agent.poll() is None:
            stop_pid_group(self.agent.pid, grace_s=15.0)
        self.state = "off"
        self.agent = None
        self.write_state()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel-lab-power")
    parser.add_argument("--node", required=True)
    parser.add_argument("--lab-dir", required=True)
    parser.add_argument("--agent-log", required=True)
    parser.add_argument("agent", nargs=argparse.REMAINDER, help="-- the node agent's argv")
    args = parser.parse_args(argv)
    agent = args.agent[1:] if args.agent[:1] == ["--"] else args.agent
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    supervisor = Supervisor(args.node, Path(args.lab_dir), agent, Path(args.agent_log))

    def on_term(signum: int, frame: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    supervisor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
