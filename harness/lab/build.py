"""Build the lab's control plane, OpenTofu and RustFS from the registries, pinned and cached.

``lab/tools/kube`` and ``lab/tools/etcd`` are small wrapper modules (go.mod and
go.sum committed) because k8s.io/kubernetes and etcd's server carry replace
directives that ``go install pkg@version`` refuses. RustFS is built from
crates.io with ``cargo install rustfs --version 1.0.1 --locked`` (the crate's
own Cargo.lock, ``--no-default-features``: the FTPS, WebDAV and GCS extras are
not S3) and a release profile tuned for build time on 2 cores (see
:data:`RUSTFS_PROFILE`); it needs ``protoc`` (Debian ``protobuf-compiler``,
which ``bootstrap.sh`` installs). Binaries land in a per-user cache keyed by
the pinned versions; what is already there and reports the right version is
not rebuilt.
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

from harness import assets
from harness.errors import ConfigError, HarnessError
from harness.lab.paths import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    RUSTFS_VERSION,
    TOFU_VERSION,
    bin_dir,
    cache_root,
)
from harness.processes import stop_pid_group

REPO = Path(__file__).resolve().parents[2]
TOOLS = assets.tools()


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
"""What ``lab up`` needs (OpenTofu is for the proofs; RustFS for its topologies, checked there)."""

RUSTFS_PROFILE = {
    "CARGO_PROFILE_RELEASE_OPT_LEVEL": "1",
    "CARGO_PROFILE_RELEASE_DEBUG": "false",
    "CARGO_PROFILE_RELEASE_LTO": "off",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "false",
    # build scripts and proc macros run once, at build time: compiling them fast beats running
    # them fast (they are not part of the binary that runs)
    "CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_OPT_LEVEL": "0",
    "CARGO_PROFILE_RELEASE_BUILD_OVERRIDE_DEBUG": "false",
    "CARGO_PROFILE_RELEASE_STRIP": "symbols",
}
"""The release profile RustFS is built with: opt-level 1 (most of the speed of 3 for far less
compile time), no debug info, no LTO, build scripts and proc macros at opt-level 0, symbols
stripped. Measured on this machine: see docs/figures.md."""
FAST_LINKERS = ("mold", "ld.lld")
"""Linkers tried in order (Debian's ``mold``, ``lld``); the system linker when none is there."""


def fast_linker_flags() -> str:
    """``-C link-arg=-fuse-ld=...`` for the first fast linker on PATH, empty when none is."""
    for name in FAST_LINKERS:
        if shutil.which(name):
            return f"-C link-arg=-fuse-ld={name.removeprefix('ld.')}"
    return ""


def rustfs_build_env(base: dict[str, str]) -> dict[str, str]:
    """The environment ``cargo install`` runs in: the profile, and a fast linker when present.

    Not here: rustc's parallel front end (``-Z threads=2``, nightly). Tried on this machine's
    2 cores from an empty target directory, unloaded: the 810 dependencies took 37.7 min
    (33.8 min without it) and the ``rustfs`` crate alone had run 29 min, still in code
    generation, when the build was stopped at 66.9 min; see docs/figures.md."""
    env = {**base, **RUSTFS_PROFILE, "CARGO_TERM_COLOR": "never"}
    flags = fast_linker_flags()
    if flags:
        env["RUSTFLAGS"] = f"{base.get('RUSTFLAGS', '')} {flags}".strip()
    return env


RUSTFS_MIN_TOOLCHAIN = (1, 97)
"""The oldest rustc that compiles RustFS 1.0.1 here (its manifest says 1.98.1; measured: the
2026-05-19 nightly, 1.97, compiles every crate without a language error)."""


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
    rustfs: bool = False,
) -> dict[str, float]:
    """Build every missing binary; returns seconds per tool (0 when cached).

    RustFS only with ``rustfs`` (the topologies that run it build it first).
    """
    target = directory or bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    # in turn: three concurrent go builds on 2 cores took longer (docs/figures.md)
    for tool in TOOL_SETS:
        if _is_built(tool, target):
            progress(f"{tool.module_dir}: cached ({', '.join(tool.binaries)} {tool.version})")
            timings[tool.module_dir] = 0.0
            continue
        timings[tool.module_dir] = _build_tool(tool, target, progress)
    if rustfs:
        if rustfs_built(target):
            progress(f"rustfs: cached (rustfs {RUSTFS_VERSION})")
            timings["rustfs"] = 0.0
        else:
            timings["rustfs"] = build_rustfs(target, progress)
    (target / "build-info.json").write_text(
        json.dumps(
            {
                "timings_s": timings,
                "kubernetes": KUBERNETES_VERSION,
                "etcd": ETCD_VERSION,
                "rustfs": RUSTFS_VERSION,
            }
        )
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
        code = _run_logged(argv, env, log_path, progress, started, tool.module_dir, module)
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


# ------------------------------------------------------------------ rustfs ---


def rustfs_binary(directory: Path | None = None) -> Path:
    return (directory or bin_dir()) / "rustfs"


def rustfs_version(path: Path) -> str:
    """The first line of ``rustfs --version`` (``rustfs 1.0.1``), empty when it cannot run."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout.strip().splitlines() or [""])[0].strip()


def rustfs_built(directory: Path | None = None) -> bool:
    path = rustfs_binary(directory)
    return path.exists() and rustfs_version(path) == f"rustfs {RUSTFS_VERSION}"


def _rustc_version(toolchain: str) -> tuple[int, int] | None:
    rustc = shutil.which("rustc") or str(Path.home() / ".cargo" / "bin" / "rustc")
    argv = [rustc, f"+{toolchain}", "--version"] if toolchain else [rustc, "--version"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    parts = out.split()
    if len(parts) < 2:
        return None
    major, minor = parts[1].split(".")[:2]
    return int(major), int(minor)


def _toolchain() -> str:
    """The newest toolchain here that can build RustFS: ``nightly`` when stable is too old."""
    for name in ("", "nightly"):
        found = _rustc_version(name)
        if found is not None and found >= RUSTFS_MIN_TOOLCHAIN:
            return name
    raise ConfigError(
        f"no Rust toolchain here is {RUSTFS_MIN_TOOLCHAIN[0]}.{RUSTFS_MIN_TOOLCHAIN[1]} or newer "
        f"(RustFS {RUSTFS_VERSION} needs it)",
        "install a newer stable or nightly toolchain with rustup",
    )


def _run_logged(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    progress: Callable[[str], None],
    started: float,
    what: str = "rustfs",
    cwd: Path | None = None,
) -> int:
    """Run a build in its own session, its output to ``log_path``, progress every 15 s
    (``what``: so many units built, of cargo's ``Compiling`` lines or go's package lines)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            units, unit = 0, "crates" if what == "rustfs" else "packages"
            last_report = 0.0
            for line in process.stdout:
                log.write(line)
                if what != "rustfs" or line.strip().startswith("Compiling"):
                    units += 1
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    progress(
                        f"{what}: {units} {unit}, {time.monotonic() - started:.0f}s "
                        f"({line.strip()[:60]})"
                    )
            return process.wait()
        except BaseException:  # interrupted (Ctrl-C) or failing: no build left behind
            stop_pid_group(process.pid, grace_s=5.0)
            process.wait(timeout=5)
            raise


def build_rustfs(target: Path, progress: Callable[[str], None]) -> float:
    """``cargo install`` RustFS into the cargo cache and copy it next to the Go tools."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        raise ConfigError("cargo is not on PATH", "install Rust with rustup to build RustFS")
    if not shutil.which("protoc"):
        raise ConfigError(
            "protoc is not on PATH (RustFS's build scripts need it)",
            "run bootstrap.sh as root, or install Debian's protobuf-compiler",
        )
    cache = cache_root() / "cargo"
    root = cache / f"rustfs-{RUSTFS_VERSION}"
    installed = root / "bin" / "rustfs"
    if installed.exists() and rustfs_version(installed) == f"rustfs {RUSTFS_VERSION}":
        # cargo's own install root is part of the cache: no cargo run at all
        shutil.copy2(installed, target / ".rustfs.tmp")
        os.replace(target / ".rustfs.tmp", rustfs_binary(target))
        progress(f"rustfs: cached in {root}")
        return 0.0
    toolchain = _toolchain()
    env = rustfs_build_env(dict(os.environ))
    argv = [
        cargo,
        *([f"+{toolchain}"] if toolchain else []),
        "install",
        "rustfs",
        "--version",
        RUSTFS_VERSION,
        "--locked",
        "--ignore-rust-version",
        "--no-default-features",
        "--root",
        str(root),
        "--target-dir",
        str(cache / "target"),
        "-j",
        str(os.cpu_count() or 2),
        # cargo's report of where the time went (target/cargo-timings/), for the figures page
        "--timings",
    ]
    started = time.monotonic()
    linker = env.get("RUSTFLAGS", "").rpartition("-fuse-ld=")[2] or "system linker"
    progress(
        f"rustfs: cargo install rustfs {RUSTFS_VERSION} ({toolchain or 'stable'}, {linker}) ..."
    )
    log_path = target / "build-rustfs.log"
    code = _run_logged(argv, env, log_path, progress, started)
    if code != 0:
        raise HarnessError(
            f"cargo install rustfs {RUSTFS_VERSION} failed (exit {code})",
            f"the first error is in {log_path}",
            details=_tail(log_path),
        )
    tmp = target / ".rustfs.tmp"
    shutil.copy2(root / "bin" / "rustfs", tmp)
    os.replace(tmp, rustfs_binary(target))
    version = rustfs_version(rustfs_binary(target))
    if version != f"rustfs {RUSTFS_VERSION}":
        raise HarnessError(
            f"rustfs reports {version!r}, expected {RUSTFS_VERSION}", "see " + str(log_path)
        )
    elapsed = time.monotonic() - started
    progress(f"rustfs: built in {elapsed:.0f}s ({version})")
    return elapsed
