#!/usr/bin/env bash
# Create .venv/ and install flywheel-chaos with its test and dev tools, and the
# machine packages the tests use (as root, from Debian: chromium for the report
# rendering test, protobuf-compiler for the RustFS build, busybox-static for the RCA
# debug pod's listing script, run by the busybox its default image has; buildah and
# debootstrap for the image test: a base image made locally, the Containerfile built).
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v mold >/dev/null 2>&1 || need+=(mold)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } \
            || echo "warning: could not install ${need[*]}; the tests that need them will say so" >&2
    else
        echo "note: install ${need[*]} (Debian packages) for the report rendering test, the RustFS build, the debug pod's script test and the image test" >&2
    fi
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.flywheel-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
fi
