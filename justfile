# flywheel-chaos: the operator's entry points. `just` lists them.

venv := justfile_directory() / ".venv/bin"

# list the recipes
default:
    @just --list

# the main job: an S3 state authority, the pre-mutation guard, then the smoke experiment
demo:
    {{venv}}/python -m harness.sandbox '{{venv}}/flywheel-chaos guard ;; {{venv}}/chaos --log-file .lab-chaostoolkit.log run --journal-path .lab-journal.json experiments/state-authority-smoke.yaml'

# static checks and the whole test suite (real SeaweedFS; the lab when built)
test: lint
    {{venv}}/pytest

# ruff, mypy strict and the layering rule (probes/actions never import harness)
lint:
    {{venv}}/ruff check .
    {{venv}}/mypy
    {{venv}}/lint-imports

# the pre-mutation deep check of the state authority (fail closed)
tofu-state-authority-deep-check *args:
    {{venv}}/flywheel-chaos guard {{args}}

# list every probe and action of the extension
discover:
    {{venv}}/chaos discover flywheel-chaos --no-install --no-system-info --discovery-path discovery.json

# measure the guard against raw boto3 on loopback
bench-guard:
    {{venv}}/python benchmarks/guard_overhead.py
