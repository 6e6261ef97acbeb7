"""Making S3 clients from several threads at once (real botocore; no server needed)."""

from __future__ import annotations

import threading
import time
from typing import Any

import botocore.loaders
import pytest

from flywheel_chaos.s3 import client as s3
from flywheel_chaos.s3.authority import load_authority


def test_threads_making_their_first_clients_at_once_parse_the_s3_model_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    original = botocore.loaders.JSONFileLoader.load_file

    def counting(self: Any, file_path: str) -> Any:
        if "/s3/" in file_path and file_path.endswith("service-2"):
            parsed.append(file_path)
            time.sleep(0.05)  # a parse slow enough for the others to arrive meanwhile
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", counting)
    monkeypatch.setattr(s3, "_session", None)  # a fresh session: nothing cached yet
    authority = load_authority(
        endpoint="http://127.0.0.1:9",
        bucket="b",
        key="k",
        environ={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"},
    )
    start = threading.Barrier(4)
    made: list[Any] = []

    def make() -> None:
        start.wait(5)
        made.append(s3.new_s3_client(authority))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 4 and len({id(c) for c in made}) == 4
    assert len(parsed) == 1, parsed
