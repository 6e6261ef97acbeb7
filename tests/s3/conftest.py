"""Fixtures of the S3 tests: real servers on loopback (one per session), a fresh bucket per test.

``server`` is SeaweedFS unless a module names ``SERVERS`` (the probe suite runs every test
that uses the server on SeaweedFS and on RustFS); RustFS is skipped, saying so, where it is
not built.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.lab.rustfs import RustFSNotFound, RustFSServer, rustfs_binary
from harness.lab.seaweed import SeaweedS3
from tests.support.s3kit import STATE_KEY, admin_client, empty_and_delete_bucket, make_bucket

Server = TypeVar("Server", SeaweedS3, RustFSServer)


def _serving(kind: type[Server], directory: Path, prefix: str) -> Iterator[Server]:
    """A real server of ``kind`` on loopback with enforced credentials, stopped after."""
    server = kind(
        data_dir=directory,
        access_key=prefix + secrets.token_hex(6).upper(),
        secret_key=secrets.token_urlsafe(24),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 server on loopback (no telemetry)."""
    yield from _serving(SeaweedS3, tmp_path_factory.mktemp("seaweed"), "AKFLY")


@pytest.fixture(scope="session")
def rustfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RustFSServer]:
    """A real RustFS 1.0.1 on loopback (built by lab build --rustfs; skipped, saying so, if not)."""
    try:
        rustfs_binary()
    except RustFSNotFound as exc:
        pytest.skip(str(exc))
    yield from _serving(RustFSServer, tmp_path_factory.mktemp("rustfs"), "AKRFS")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    servers = getattr(metafunc.module, "SERVERS", None)
    if servers and "server" in metafunc.fixturenames:
        metafunc.parametrize("server", servers, indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> SeaweedS3 | RustFSServer:
    """The S3 server a module's tests run against (SeaweedFS unless parametrized)."""
    name = getattr(request, "param", "seaweedfs")
    return request.getfixturevalue("rustfs" if name == "rustfs" else "seaweed")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def s3_admin(server: SeaweedS3 | RustFSServer) -> Any:
    return admin_client(server)


@pytest.fixture
def state_bucket(s3_admin: Any) -> Iterator[str]:
    """A versioned bucket holding a seeded state key; removed after the test."""
    name = make_bucket(s3_admin)
    yield name
    empty_and_delete_bucket(s3_admin, name)


@pytest.fixture
def unversioned_bucket(s3_admin: Any) -> Iterator[str]:
    name = make_bucket(s3_admin, versioned=False)
    yield name
    empty_and_delete_bucket(s3_admin, name)


@pytest.fixture
def authority_env(
    server: SeaweedS3 | RustFSServer, state_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The DESIGN.md environment contract pointing at the test server and bucket."""
    env = {
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "TOFU_STATE_BUCKET": state_bucket,
        "TOFU_STATE_KEY": STATE_KEY,
    }
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
