"""A moto server for tests: S3, DynamoDB and the other AWS APIs moto serves, over real HTTP.

:func:`run_moto_server` starts moto's ``ThreadedMotoServer`` on a free loopback port with
fake credentials in the environment for as long as it runs, so clients (aioboto3, boto3,
pyarrow) talk to it through ``endpoint_url`` and no real AWS account is ever used. The
``moto_server`` fixture of :mod:`flowstone.testing` wraps it. moto is imported only when a
server starts: importing :mod:`flowstone.testing` never needs it.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FAKE_CREDENTIALS", "MotoServer", "run_moto_server"]

#: The environment a moto server runs with: credentials moto accepts, and a region.
FAKE_CREDENTIALS: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoServer:
    """A running moto server.

    :param endpoint_url: its address (``http://127.0.0.1:<port>``), for ``endpoint_url=``
    :param region: the region clients should name
    """

    endpoint_url: str
    region: str = "us-east-1"

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of ``service`` on this server (for setting up and inspecting).

        :raises ImportError: boto3 is not installed
        """
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name by default) and return its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client("s3").create_bucket(Bucket=bucket)
        return bucket

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables for a child process that should use this server."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_moto_server() -> Iterator[MotoServer]:
    """Run moto's HTTP server on 127.0.0.1 and a free port until the block ends.

    The fake credentials of :data:`FAKE_CREDENTIALS` are in ``os.environ`` meanwhile (the
    previous values are put back afterwards).

    :raises ImportError: moto (``moto[server]``) is not installed
    """
    from moto.server import ThreadedMotoServer

    saved = {name: os.environ.get(name) for name in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
