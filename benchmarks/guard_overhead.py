"""The guard's checks vs the same S3 calls made with raw boto3, in one run, on loopback.

Starts a real SeaweedFS, seeds a versioned bucket and a state key, then times:
  ours   probes.state_authority.run_checks (what `flywheel-chaos guard` runs)
  raw    the same calls with a bare boto3 client, no classification or bounds
and the whole-process wall time of `flywheel-chaos guard`. The lock race is
reported separately: SeaweedFS makes each losing conditional writer retry in
1 s steps, which dominates both sides and says nothing about our overhead.

    python benchmarks/guard_overhead.py [--rounds 15]

Every comparison is made in the same run with rounds interleaved and the order
alternating (ours first in even rounds, raw first in odd ones).
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

import boto3
import botocore.config

from flywheel_chaos.s3.authority import load_authority
from harness.lab.seaweed import SeaweedS3
from probes import state_authority as sa

KEY = "env/bench/terraform.tfstate"


def raw_checks(client, bucket: str, race: bool) -> None:  # type: ignore[no-untyped-def]
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
    if race:
        race_key = lock + "-race"
        barrier = threading.Barrier(8)
        winners: list[str] = []

        def contender() -> None:
            barrier.wait()
            with contextlib.suppress(client.exceptions.ClientError):
                winners.append(
                    client.put_object(Bucket=bucket, Key=race_key, Body=b"{}", IfNoneMatch="*")[
                        "VersionId"
                    ]
                )

        threads = [threading.Thread(target=contender) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for version in winners:
            client.delete_object(Bucket=bucket, Key=race_key, VersionId=version)


def ours_without_race(authority) -> None:  # type: ignore[no-untyped-def]
    sa._check_bucket_listed(authority)
    sa._check_bucket_reachable(authority)
    sa._check_state_key(authority)
    sa._check_canary_round_trip(authority)
    sa._check_versioning(authority)
    # the lock check's sequential part, without the race
    key = sa._canary_key("locks") + ".tflock"
    first = sa._conditional_put(authority, key, b"{}")
    sa._conditional_put(authority, key, b"{}")
    sa._delete_quietly(authority, key, [first.version_id])


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = SeaweedS3(
            Path(tmp), "AKBENCH" + secrets.token_hex(4).upper(), secrets.token_urlsafe(20)
        )
        with server:
            raw = boto3.client(
                "s3",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                config=botocore.config.Config(
                    retries={"total_max_attempts": 1}, max_pool_connections=16
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
            # warm both clients
            raw_checks(raw, bucket, race=True)
            sa.run_checks(authority)
            # rounds interleaved, the order alternating, so both sides meet the same server state
            ours: list[float] = []
            theirs: list[float] = []
            ours_full: list[float] = []
            raw_full: list[float] = []
            for index in range(args.rounds):
                pair = [
                    (ours, lambda: ours_without_race(authority)),
                    (theirs, lambda: raw_checks(raw, bucket, race=False)),
                ]
                full = [
                    (ours_full, lambda: sa.run_checks(authority)),
                    (raw_full, lambda: raw_checks(raw, bucket, race=True)),
                ]
                if index % 2:
                    pair.reverse()
                    full.reverse()
                for samples, fn in pair + full:
                    samples.extend(timed(fn, 1))
            cli = [str(Path(sys.executable).parent / "flywheel-chaos"), "guard", "--json"]
            wall = []
            for _ in range(5):
                started = time.perf_counter()
                result = subprocess.run(
                    cli, env={**os.environ, **env}, capture_output=True, timeout=120
                )
                wall.append((time.perf_counter() - started) * 1000)
                assert result.returncode == 0, result.stderr
            ok_ours, ok_raw = statistics.median(ours), statistics.median(theirs)
            print(f"checks without the lock race, median of {args.rounds}:")
            print(f"  flywheel-chaos {ok_ours:8.1f} ms")
            print(f"  raw boto3      {ok_raw:8.1f} ms")
            print(f"  ratio          {ok_ours / ok_raw:8.2f}x  (target <= 1.3x)")
            print(
                "all checks with the 8-writer lock race (SeaweedFS serialises losers in 1 s steps):"
            )
            print(
                f"  flywheel-chaos {statistics.median(ours_full):8.1f} ms  (min {min(ours_full):.0f})"
            )
            print(
                f"  raw boto3      {statistics.median(raw_full):8.1f} ms  (min {min(raw_full):.0f})"
            )
            print(
                f"  ratio          {statistics.median(ours_full) / statistics.median(raw_full):8.2f}x"
            )
            print(
                f"whole process `flywheel-chaos guard --json`, median of 5: {statistics.median(wall):.0f} ms "
                f"(min {min(wall):.0f}; target <= 1500 ms)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
