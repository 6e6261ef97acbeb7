"""Build the lab's control plane from the Go module proxy through the pinned tool modules.

``lab/tools/kube`` and ``lab/tools/etcd`` are small wrapper modules (go.mod and
go.sum committed) because k8s.io/kubernetes and etcd's server carry replace
directives that ``go install pkg@version`` refuses. Binaries land in a
per-user cache keyed by the pinned versions; what is already there and
reports the right version is not rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, HarnessError
from harness.lab.paths import ETCD_VERSION, KUBERNETES_VERSION, TOFU_VERSION, bin_dir

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "lab" / "tools"


def _kube_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


@dataclass(frozen=True)
class Tool:
    """A set of binaries built from one tool module."""

    module_dir: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    version: str
    version_flag: str
    tags: str
    ldflags: str


TOOL_SETS: tuple[Tool, ...] = (
    Tool(
        module_dir="etcd",
        packages=("go.etcd.io/etcd/server/v3",),
        binaries=("etcd",),
        version=ETCD_VERSION,
        version_flag="--version",
        tags="",
        ldflags=f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}",
    ),
    Tool(
        module_dir="kube",
        packages=(
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
        ),
        binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
        version=KUBERNETES_VERSION,
        version_flag="--version",
        tags="selinux,notest,grpcnotrace",
        ldflags=_kube_ldflags(),
    ),
)

TOFU = Tool(
    module_dir="tofu",
    packages=("github.com/opentofu/opentofu/cmd/tofu",),
    binaries=("tofu",),
    version=TOFU_VERSION,
    version_flag="version",
    tags="",
    ldflags="-s -w -X github.com/opentofu/opentofu/version.dev=no",
)
TOOL_SETS = (*TOOL_SETS, TOFU)

BINARIES: tuple[str, ...] = tuple(b for tool in TOOL_SETS for b in tool.binaries if b != "tofu")


def binary_version(path: Path, flag: str = "--version") -> str:
    """The line of ``path --version`` that names a version (empty when it cannot run)."""
    try:
        result = subprocess.run(
            [str(path), flag], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (result.stdout + "\n" + result.stderr).strip().splitlines()
    named = [
        line
        for line in lines
        if "version" in line.lower() or line.startswith(("OpenTofu", "Kubernetes"))
    ]
    return (named or lines or [""])[0].strip()


def _is_built(tool: Tool, directory: Path) -> bool:
    for name in tool.binaries:
        path = directory / name
        if not path.exists():
            return False
        if tool.version.lstrip("v") not in binary_version(path, tool.version_flag):
            return False
    return True


def missing_binaries(directory: Path | None = None) -> list[str]:
    """Names of lab binaries not (yet) in the cache."""
    where = directory or bin_dir()
    return [name for name in BINARIES if not (where / name).exists()]


def _go() -> str:
    found = shutil.which("go") or next(
        (
            str(p)
            for p in (Path("/usr/local/go/bin/go"), Path.home() / "go" / "bin" / "go")
            if p.exists()
        ),
        None,
    )
    if not found:
        raise ConfigError(
            "the Go toolchain (go) is not on PATH", "install Go 1.26 or newer to build the lab"
        )
    return found


def build(
    directory: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """Build every missing binary; returns seconds per tool module (0 when cached)."""
    target = directory or bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for tool in TOOL_SETS:
        if _is_built(tool, target):
            progress(f"{tool.module_dir}: cached ({', '.join(tool.binaries)} {tool.version})")
            timings[tool.module_dir] = 0.0
            continue
        timings[tool.module_dir] = _build_tool(tool, target, progress)
    (target / "build-info.json").write_text(
        json.dumps({"timings_s": timings, "kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION})
    )
    return timings


def _build_tool(tool: Tool, target: Path, progress: Callable[[str], None]) -> float:
    module = TOOLS / tool.module_dir
    if not (module / "go.mod").exists():
        raise ConfigError(
            f"tool module {module} is missing", "run lab build from a checkout of flywheel-chaos"
        )
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOFLAGS="-mod=readonly -buildvcs=false", GOTOOLCHAIN="local")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target) as staging:
        argv = [
            _go(),
            "build",
            "-v",
            "-trimpath",
            "-o",
            # one package: name the file (etcd's server/v3 would build "server")
            f"{staging}/{tool.binaries[0]}" if len(tool.packages) == 1 else staging + "/",
            *(["-tags", tool.tags] if tool.tags else []),
            "-ldflags",
            tool.ldflags,
            *tool.packages,
        ]
        progress(f"{tool.module_dir}: go build {' '.join(tool.binaries)} {tool.version} ...")
        log_path = target / f"build-{tool.module_dir}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                argv,
                cwd=module,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            assert process.stdout is not None
            last_report = 0.0
            for compiled, line in enumerate(process.stdout, start=1):
                log.write(line)
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    progress(
                        f"{tool.module_dir}: {compiled} packages, "
                        f"{time.monotonic() - started:.0f}s ({line.strip()[:60]})"
                    )
            code = process.wait()
        if code != 0:
            raise HarnessError(
                f"go build of {tool.module_dir} failed (exit {code})",
                "if the module proxy refused a module, the log names it",
                details=_tail(log_path),
            )
        for name in tool.binaries:
            os.replace(Path(staging) / name, target / name)
    elapsed = time.monotonic() - started
    for name in tool.binaries:
        version = binary_version(target / name, tool.version_flag)
        if tool.version.lstrip("v") not in version:
            raise HarnessError(
                f"{name} reports {version!r}, expected {tool.version}",
                "the version ldflags did not apply; check lab/tools",
            )
    progress(f"{tool.module_dir}: built in {elapsed:.0f}s")
    return elapsed


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""
