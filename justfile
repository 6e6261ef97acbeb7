# flywheel-chaos: the operator's entry points. `just` lists them.

venv := justfile_directory() / ".venv/bin"
export PATH := venv + ":" + env_var('PATH')

# list the recipes
default:
    @just --list

# interim runs RustFS as production does (its first build takes about an hour on 2 cores);
# `just demo interim-seaweedfs` starts in minutes with SeaweedFS standing in.
# the main job: build (once) and start the lab, guard the state authority, drain bumble, gate
demo topology="interim":
    flywheel-chaos lab build {{ if topology =~ "rustfs|^interim$" { "--rustfs" } else { "" } }}
    flywheel-chaos lab up --topology {{topology}}
    . .lab/env && flywheel-chaos guard --record
    # chaos run exits 1 on any verdict but survived; the interim cannot survive a drain, so
    # this recipe expects exactly that verdict, explicitly, from the record this run wrote
    . .lab/env && rm -f .lab/journal.json && (chaos --log-file .lab/chaostoolkit.log run --journal-path .lab/journal.json experiments/node-drain.yaml || true)
    . .lab/env && flywheel-chaos evidence show --journal .lab/journal.json --expect-verdict not-survived
    . .lab/env && flywheel-chaos gate --expect-interim
    @echo "the lab keeps running: 'source .lab/env' to use it, 'just lab-down' to stop it"

# run one experiment against the lab: just run pod-delete
run experiment:
    . .lab/env && chaos --log-file .lab/chaostoolkit.log run --journal-path .lab/journal.json experiments/{{experiment}}.yaml

# undo any fault whose rollback did not run
recover:
    . .lab/env && flywheel-chaos recover

# Real RustFS is tested when it is built; otherwise its tests say they are skipped (test-all).
# static checks, then every test (real S3 servers and the lab's real control plane), the test
# files shared between two workers (a file's tests stay on one, with its one lab)
test: lint lab-build
    pytest -n 2 --dist loadfile

# build RustFS first (about an hour on 2 cores, once), then `test`: nothing is skipped
test-all:
    flywheel-chaos lab build --rustfs
    just test

# ruff (lint and format), mypy strict and the layering rule (probes/actions never import harness)
lint:
    ruff check .
    ruff format --check .
    mypy
    lint-imports

# build etcd and the Kubernetes control plane from the Go module proxy (cached per user)
lab-build:
    flywheel-chaos lab build

# start the lab (a running lab is left as it is)
lab-up *args:
    flywheel-chaos lab up {{args}}

# stop every lab process
lab-down *args:
    flywheel-chaos lab down {{args}}

# the pre-mutation deep check of the state authority (fail closed)
tofu-state-authority-deep-check *args:
    flywheel-chaos guard --record {{args}}

# the HA readiness gate: red until a state authority proves the HA requirements
tofu-state-ha-readiness *args:
    flywheel-chaos gate {{args}}

# list every probe and action of the extension
discover:
    chaos discover flywheel-chaos --no-install --no-system-info --discovery-path discovery.json

# the guard against the same S3 calls made with raw boto3
bench-guard:
    python benchmarks/guard_overhead.py

# lab start-up time and memory
bench-lab:
    python benchmarks/lab_startup.py

# the survival prober's outage against a known freeze, and Chaos Toolkit's view of it
bench-outage:
    python benchmarks/outage_accuracy.py

# drain of bumble: ours vs kubectl vs chaostoolkit-kubernetes
bench-drain:
    python benchmarks/drain_time.py

# every fault experiment in the interim lab and in the ha candidate
bench-ha *args:
    python benchmarks/ha_candidate.py {{args}}

# the gate and evidence verify over 10,000 records, against the verifier before them
bench-gate:
    python benchmarks/gate_scale.py

# build the game day's image (Containerfile) with podman, buildah or docker, whichever is
# there: just image [TAG] [BASE]; the lab's OpenTofu build goes in as the image's tofu
image tag="localhost/flywheel-chaos:0.3.0" base="":
    #!/usr/bin/env bash
    set -euo pipefail
    tofu="${FLYWHEEL_TOFU:-$(python -c 'from harness.lab.paths import bin_dir; print(bin_dir())')/tofu}"
    [ -x "$tofu" ] || tofu="$(command -v tofu || true)"
    if [ ! -x "$tofu" ]; then
        echo "error: no OpenTofu binary for the image" >&2
        echo "hint: run 'flywheel-chaos lab build' (it builds tofu), or set FLYWHEEL_TOFU=/path/to/tofu" >&2
        exit 2
    fi
    mkdir -p build/image && cp "$tofu" build/image/tofu
    # the CA bundle pip trusts here, for the build stage only (never in the image)
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" build/image/ca-certificates.crt
    args=(--file Containerfile --tag "{{tag}}")
    [ -n "{{base}}" ] && args+=(--build-arg "BASE={{base}}")
    if command -v podman >/dev/null 2>&1; then
        podman build "${args[@]}" .
    elif command -v buildah >/dev/null 2>&1; then
        buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" "${args[@]}" .
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        docker build "${args[@]}" .
    else
        echo "error: no image builder: podman, buildah or a running docker is needed" >&2
        echo "hint: apt-get install buildah (Debian), then: just image" >&2
        exit 2
    fi
    echo "built {{tag}}"

# a Debian bookworm base image with python3, made locally with debootstrap (as root) and
# imported with buildah (no registry needed): just base-image, then just image TAG localhost/flywheel-base:bookworm
base-image tag="localhost/flywheel-base:bookworm":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v debootstrap >/dev/null && command -v buildah >/dev/null || { echo "error: needs debootstrap and buildah (apt-get install debootstrap buildah)" >&2; exit 2; }
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/flywheel-chaos/images"
    tarball="$cache/bookworm-python3.tar"
    if [ ! -f "$tarball" ]; then
        mkdir -p "$cache"
        root="$(mktemp -d)"
        trap 'rm -rf "$root"' EXIT
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" http://deb.debian.org/debian
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    fi
    ctr="$(buildah from scratch)"
    buildah add "$ctr" "$tarball" /
    buildah config --env PATH=/usr/local/bin:/usr/bin:/bin --cmd /bin/sh "$ctr"
    buildah commit --rm "$ctr" "{{tag}}"
