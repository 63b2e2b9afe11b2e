"""Fixtures for the S3 plugin: buckets on the moto server of ``flowstone.testing``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

pytest.importorskip("aioboto3")

from flowstone.ext.s3 import S3IOManager
from flowstone.testing import MotoServer


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A new, empty bucket on the moto server."""
    return moto_server.create_bucket()


@pytest.fixture
async def manager(moto_server: MotoServer, bucket: str) -> AsyncIterator[S3IOManager]:
    """An open ``S3IOManager`` on ``bucket`` under the prefix ``lake``; closed afterwards."""
    async with S3IOManager(bucket, "lake", endpoint_url=moto_server.endpoint_url) as io:
        yield io


@pytest.fixture
def moto_auth() -> Iterator[None]:
    """Make the moto server check credentials (it accepts any by default) for one test."""
    from moto import settings

    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = saved


def object_keys(server: MotoServer, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` under ``prefix``, sorted."""
    paginator = server.client().get_paginator("list_objects_v2")
    return sorted(
        entry["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for entry in page.get("Contents", ())
    )
