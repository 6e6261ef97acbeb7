"""Child processes the way the lab needs them.

Each child runs in its own process group with its output in a log file; its
health is polled against a deadline; it is stopped with SIGTERM then SIGKILL
(to the whole group). The last lines of a child's output are kept for the
error message. (The lab stops its children in reverse order from the PIDs it
records, since they outlive the command that started them.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger("flywheel_chaos.processes")

T = TypeVar("T")


class StartError(RuntimeError):
    """A child did not become healthy; carries its name and last output."""

    def __init__(self, name: str, reason: str, output_tail: str = "", hint: str = "") -> None:
        self.name = name
        self.reason = reason
        self.output_tail = output_tail
        self.hint = hint
        super().__init__(f"{name} {reason}")


def tail(path: Path, lines: int = 15, max_bytes: int = 16_384) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    waiting_for: str,
    interval_s: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> float:
    """Poll ``condition`` until it is true; return the seconds it took.

    Raises :class:`TimeoutError` naming ``waiting_for`` at the deadline, or
    :class:`RuntimeError` with the reason when ``abort`` returns one.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if condition():
            return time.monotonic() - started
        if abort is not None:
            reason = abort()
            if reason:
                raise RuntimeError(reason)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:g}s waiting for {waiting_for}")
        time.sleep(interval_s)


def retry_until(
    action: Callable[[], T],
    timeout_s: float,
    doing: str,
    interval_s: float = 0.5,
) -> T:
    """:func:`wait_until` for an ``action`` that fails by raising; returns its result.

    Each failed attempt is logged with its number. At the deadline raises
    :class:`TimeoutError` naming ``doing``, the attempts made and the last error.
    ``action`` must bound its own time (client timeouts) and be safe to repeat.
    """
    failed: list[Exception] = []
    result: list[T] = []

    def succeeded() -> bool:
        try:
            result.append(action())
            return True
        except Exception as error:  # every failure is retried until the deadline
            failed.append(error)
            logger.info("%s: attempt %d failed: %s", doing, len(failed), error)
            return False

    try:
        wait_until(succeeded, timeout_s, doing, interval_s=interval_s)
    except TimeoutError:
        raise TimeoutError(
            f"gave up after {timeout_s:g}s and {len(failed)} attempts at {doing}; "
            f"last error: {failed[-1]}"
        ) from failed[-1]
    return result[0]


def port_free(host: str, port: int) -> bool:
    """True when host:port can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", twin_offset: int = 0, below: int = 55536) -> int:
    """A free TCP port on ``host``; with ``twin_offset``, port+offset is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if twin_offset and (port >= below or not port_free(host, port + twin_offset)):
            continue
        if port_free(host, port):
            return port
    raise RuntimeError(f"no free port pair on {host} (offset {twin_offset})")


@dataclass
class ManagedProcess:
    """One child process: command, environment, log file and health check."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    healthy: Callable[[], bool] | None = None
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output_tail(self, lines: int = 15) -> str:
        return tail(self.log_path, lines)

    def start(self) -> None:
        """Start the child and wait until it is healthy; raise StartError otherwise."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches grandchildren
            )
        except OSError as exc:
            raise StartError(self.name, f"could not be started: {exc}") from exc
        finally:
            log.close()
        logger.info("started %s (pid %d)", self.name, self.popen.pid)
        if self.healthy is None:
            return
        try:
            wait_until(
                self.healthy,
                self.start_timeout_s,
                f"{self.name} to become healthy",
                interval_s=0.05,
                abort=self._died,
            )
        except (TimeoutError, RuntimeError) as exc:
            output = self.output_tail()
            self.stop()
            raise StartError(self.name, str(exc), output) from exc

    def _died(self) -> str | None:
        if self.popen is not None and self.popen.poll() is not None:
            return f"exited with code {self.popen.returncode} while starting"
        return None

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it after the grace period; return the exit code."""
        if self.popen is None:
            return None
        pgid = self.popen.pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %ss, killing", self.name, self.stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        # leftovers of the group (children that ignored SIGTERM)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        return self.popen.returncode


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def stop_pid_group(pid: int, grace_s: float = 10.0) -> None:
    """Stop a detached child (started by an earlier command) by its PID and group."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a file only its owner can read, with no moment of wider access.

    The file is created 0600 (an existing one is narrowed to 0600 before a
    byte is written), so a key never sits readable between write and chmod.
    """
    raw = data.encode() if isinstance(data, str) else data
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            descriptor = -1
            handle.write(raw)
    finally:
        if descriptor >= 0:
            os.close(descriptor)


def rss_mib(pids: list[int]) -> float:
    """Resident memory of ``pids`` together, in MiB (a pid gone meanwhile counts 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)
