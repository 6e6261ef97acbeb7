"""The guard against the same S3 calls made with raw boto3, in one run, on loopback, on
SeaweedFS and on RustFS (when built).

For each server it starts a real one, seeds a versioned bucket and a state key, then times:
  ours   flywheel_chaos.s3.checks.run_checks (what `flywheel-chaos guard` runs: the first
         check alone, the other five concurrently)
  raw    the same calls with a bare boto3 client, one after another (no classification,
         no bounds), and the same 8-writer race
and the whole-process wall time of `flywheel-chaos guard --json` (5 runs), with its import
time. The lock race is timed per racer on both sides: when the raw race's losers take as
long as ours, the time is the server's (it holds contended conditional writers), not our
retry pacing.

    python benchmarks/guard_overhead.py [--rounds 9] [--server seaweedfs|rustfs|both]

Rounds are interleaved, the order alternating (ours first in even rounds, raw in odd).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from flywheel_chaos.s3.authority import load_authority
from flywheel_chaos.s3.checks import run_checks
from harness.lab.rustfs import RustFSNotFound, RustFSServer, rustfs_binary
from harness.lab.seaweed import SeaweedS3

KEY = "env/bench/terraform.tfstate"


def raw_race(client: Any, bucket: str, writers: int = 8) -> list[float]:
    """``writers`` bare If-None-Match PUTs of one fresh key; each racer's milliseconds."""
    key = f"_flywheel-chaos/locks/raw-{uuid.uuid4().hex}-race.tflock"
    barrier = threading.Barrier(writers)
    winners: list[str] = []
    times: list[float] = []

    def contender() -> None:
        barrier.wait()
        started = time.perf_counter()
        with contextlib.suppress(client.exceptions.ClientError):
            winners.append(
                client.put_object(Bucket=bucket, Key=key, Body=b"{}", IfNoneMatch="*")["VersionId"]
            )
        times.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=contender) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for version in winners:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    return sorted(times)


def raw_checks(client: Any, bucket: str) -> list[float]:
    client.list_buckets()
    client.head_bucket(Bucket=bucket)
    client.head_object(Bucket=bucket, Key=KEY)
    key = f"_flywheel-chaos/canary/raw-{uuid.uuid4().hex}"
    put = client.put_object(Bucket=bucket, Key=key, Body=os.urandom(1024))
    client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.delete_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])
    with contextlib.suppress(client.exceptions.ClientError):
        client.head_object(Bucket=bucket, Key=key)
    client.get_bucket_versioning(Bucket=bucket)
    lock = f"_flywheel-chaos/locks/raw-{uuid.uuid4().hex}.tflock"
    first = client.put_object(Bucket=bucket, Key=lock, Body=b"{}", IfNoneMatch="*")
    with contextlib.suppress(client.exceptions.ClientError):
        client.put_object(Bucket=bucket, Key=lock, Body=b"{}", IfNoneMatch="*")
    client.delete_object(Bucket=bucket, Key=lock, VersionId=first["VersionId"])
    return raw_race(client, bucket)


def _server(kind: str, directory: Path) -> SeaweedS3 | RustFSServer:
    access, secret = "AKBENCH" + secrets.token_hex(4).upper(), secrets.token_urlsafe(20)
    if kind == "rustfs":
        return RustFSServer(data_dir=directory, access_key=access, secret_key=secret)
    return SeaweedS3(data_dir=directory, access_key=access, secret_key=secret)


def _whole_process(env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Five `flywheel-chaos guard --json` runs: wall ms, and the import ms of the same path."""
    cli = [str(Path(sys.executable).parent / "flywheel-chaos"), "guard", "--json"]
    walls, imports = [], []
    for _ in range(5):
        started = time.perf_counter()
        result = subprocess.run(cli, env={**os.environ, **env}, capture_output=True, timeout=120)
        walls.append((time.perf_counter() - started) * 1000)
        assert result.returncode == 0, result.stderr
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import harness.cli.main, harness.guard"],
            check=True,
            timeout=60,
        )
        imports.append((time.perf_counter() - started) * 1000)
    return walls, imports


def bench(kind: str, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(kind, Path(tmp))
        server.start()
        try:
            raw = boto3.client(
                "s3",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                config=botocore.config.Config(
                    retries={"total_max_attempts": 1},
                    max_pool_connections=16,
                    s3={"addressing_style": "path"},
                ),
            )
            bucket = "tofu-state"
            raw.create_bucket(Bucket=bucket)
            raw.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            raw.put_object(Bucket=bucket, Key=KEY, Body=b'{"version": 4}')
            env = {
                "AWS_ENDPOINT_URL_S3": server.endpoint,
                "AWS_ACCESS_KEY_ID": server.access_key,
                "AWS_SECRET_ACCESS_KEY": server.secret_key,
                "TOFU_STATE_BUCKET": bucket,
                "TOFU_STATE_KEY": KEY,
            }
            authority = load_authority(environ=env)
            raw_checks(raw, bucket)  # warm both clients
            run_checks(authority)
            ours, theirs, per_check = [], [], {}
            our_racers: list[list[float]] = []
            raw_racers: list[list[float]] = []
            for index in range(rounds):
                sides = ["ours", "raw"] if index % 2 == 0 else ["raw", "ours"]
                for side in sides:
                    started = time.perf_counter()
                    if side == "ours":
                        results = run_checks(authority)
                        ours.append((time.perf_counter() - started) * 1000)
                        assert all(r["ok"] for r in results), results
                        for result in results:
                            per_check.setdefault(result["name"], []).append(result["duration_ms"])
                        lock = next(r for r in results if r["name"] == "lock-exclusive")
                        our_racers.append((lock["result"] or {})["racers_ms"])
                    else:
                        raw_racers.append(raw_checks(raw, bucket))
                        theirs.append((time.perf_counter() - started) * 1000)
            walls, imports = _whole_process(env)
        finally:
            server.stop()
    print(f"== {kind} ({rounds} rounds each, interleaved)")
    print(f"  ours, all six checks (concurrent): median {statistics.median(ours):7.1f} ms "
          f"({min(ours):.0f}-{max(ours):.0f})")  # fmt: skip
    print(f"  raw boto3, the same calls in order: median {statistics.median(theirs):7.1f} ms "
          f"({min(theirs):.0f}-{max(theirs):.0f})")  # fmt: skip
    print(f"  ratio ours/raw: {statistics.median(ours) / statistics.median(theirs):.2f}x")
    for name, samples in per_check.items():
        print(f"    {name:26s} median {statistics.median(samples):7.1f} ms")
    ours_slowest = [max(r) for r in our_racers if r]
    raw_slowest = [max(r) for r in raw_racers if r]
    print("  8-writer race, slowest racer: ours median "
          f"{statistics.median(ours_slowest):.0f} ms, raw median {statistics.median(raw_slowest):.0f} ms")  # fmt: skip
    print(f"    ours, one race's racers (ms): {[round(x) for x in our_racers[-1]]}")
    print(f"    raw,  one race's racers (ms): {[round(x) for x in raw_racers[-1]]}")
    print(f"  whole process `flywheel-chaos guard --json`, 5 runs: median "
          f"{statistics.median(walls):.0f} ms ({min(walls):.0f}-{max(walls):.0f}; target <= 1500); "
          f"of which Python start and imports median {statistics.median(imports):.0f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--server", choices=("seaweedfs", "rustfs", "both"), default="both")
    args = parser.parse_args()
    kinds = ["seaweedfs", "rustfs"] if args.server == "both" else [args.server]
    for kind in kinds:
        if kind == "rustfs":
            try:
                rustfs_binary()
            except RustFSNotFound as exc:
                print(f"== rustfs: skipped ({exc})")
                continue
        bench(kind, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
