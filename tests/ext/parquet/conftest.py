"""Fixtures for the Parquet IO manager: a moto S3 server on a loopback port, and buckets."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

pytest.importorskip("pyarrow")


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server the tests talk to over HTTP."""

    endpoint_url: str

    def client(self) -> object:
        """A boto3 S3 client for the server (for setting up and inspecting buckets)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's real HTTP server (``ThreadedMotoServer``) on 127.0.0.1 and a free port.

    Fake credentials are put in the environment for the session (moto accepts any), so
    no real AWS account is ever used.
    """
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in _CREDENTIALS}
    os.environ.update(_CREDENTIALS)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the moto server."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name
