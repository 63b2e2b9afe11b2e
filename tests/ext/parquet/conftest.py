"""Fixtures for the Parquet IO manager: the moto S3 server of ``flowstone.testing``, and buckets."""

from __future__ import annotations

import pytest

from flowstone.testing import MotoServer

pytest.importorskip("pyarrow")

#: The moto server the tests talk to over HTTP (the ``moto_server`` fixture's type).
S3Server = MotoServer


@pytest.fixture(scope="session")
def s3_server(moto_server: MotoServer) -> MotoServer:
    """moto's HTTP server (the plugin's ``moto_server`` fixture)."""
    return moto_server


@pytest.fixture
def bucket(s3_server: MotoServer) -> str:
    """A new, empty bucket on the moto server."""
    return s3_server.create_bucket()
