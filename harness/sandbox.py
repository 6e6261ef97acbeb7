"""A throwaway S3 state authority on loopback: ``python -m harness.sandbox -- CMD...``.

Starts SeaweedFS with fresh credentials, seeds bucket ``tofu-state`` (versioned)
and a state key, runs CMD with the environment contract set, then stops the
server. It is what the smoke job runs against when no lab is up.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

from harness.seaweed import SeaweedS3

STATE_KEY = "env/sandbox/terraform.tfstate"
SEED_STATE = b'{"version": 4, "terraform_version": "1.12.2", "serial": 1, "lineage": "sandbox", "outputs": {}, "resources": []}\n'


def main(argv: list[str]) -> int:
    commands = [c for c in " ".join(argv).split(" ;; ") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="flywheel-sandbox-") as tmp:
        server = SeaweedS3(
            Path(tmp),
            access_key="AKSANDBOX" + secrets.token_hex(4).upper(),
            secret_key=secrets.token_urlsafe(24),
        )
        with server:
            client = boto3.client(
                "s3",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
            )
            client.create_bucket(Bucket="tofu-state")
            client.put_bucket_versioning(
                Bucket="tofu-state", VersioningConfiguration={"Status": "Enabled"}
            )
            client.put_object(Bucket="tofu-state", Key=STATE_KEY, Body=SEED_STATE)
            env = dict(os.environ)
            env.update(
                AWS_ENDPOINT_URL_S3=server.endpoint,
                AWS_REGION="us-east-1",
                AWS_ACCESS_KEY_ID=server.access_key,
                AWS_SECRET_ACCESS_KEY=server.secret_key,
                TOFU_STATE_BUCKET="tofu-state",
                TOFU_STATE_KEY=STATE_KEY,
            )
            print(
                f"sandbox S3 state authority at {server.endpoint} (s3://tofu-state/{STATE_KEY})",
                flush=True,
            )
            for command in commands:
                print(f"$ {command}", flush=True)
                code = subprocess.call(command, shell=True, env=env)
                if code != 0:
                    return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
