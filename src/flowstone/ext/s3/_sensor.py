"""``S3KeySensor``: a schedule sensor that requests a run for each new object under a prefix.

It implements the ``flowstone.ext.schedule`` :class:`~flowstone.ext.schedule.Sensor`
protocol (it needs that plugin's ``schedule`` extra to be polled). Each poll lists the
prefix (every page: S3 lists by key, not by time) and requests one run per object
modified after the cursor. The cursor is the newest modification time seen and the keys
versions (``key@etag``) modified at that instant (JSON), so an object written, or
overwritten, in the same second as the last one seen is not missed. The run key is ``key@etag``: an object is processed once, and again
only when it is overwritten with other content.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

import flowstone as fs

from ._client import AwsClient, retrying

if TYPE_CHECKING:
    from collections.abc import Callable

    import aioboto3

    from flowstone.ext.schedule import SensorResult

__all__ = ["S3KeySensor"]


class S3KeySensor:
    """Fires a run for each new object under ``s3://bucket/prefix``.

    The first poll records the objects already there and fires nothing (unless
    ``existing=True``). Each run gets the tags ``s3.bucket`` and ``s3.key``, and the
    partition ``partition(key)`` (default: none).

    :param bucket: the bucket
    :param prefix: the key prefix to watch
    :param pipeline: the pipeline its runs materialize (default: the scheduler's)
    :param select: what of it to materialize (default: all)
    :param partition: the run's partition from an object's key
    :param interval: seconds between polls
    :param name: the sensor's name (default ``s3-<bucket>``)
    :param existing: also fire for the objects there at the first poll
    :param endpoint_url: the S3 endpoint (default: the environment's, else AWS)
    :param session: an ``aioboto3.Session`` (credentials, profile)
    :raises ConfigurationError: a setting is wrong (the message names it)
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        pipeline: Any = None,
        select: Any = None,
        partition: Callable[[str], str | None] | None = None,
        interval: float = 30,
        name: str | None = None,
        existing: bool = False,
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise fs.ConfigurationError(f"S3KeySensor: bucket= must be a name, not {bucket!r}")
        if not isinstance(prefix, str):
            raise fs.ConfigurationError(f"S3KeySensor: prefix= must be a string, not {prefix!r}")
        if partition is not None and not callable(partition):
            raise fs.ConfigurationError("S3KeySensor: partition= must be a function of the key")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise fs.ConfigurationError(
                f"S3KeySensor: interval= must be a number of seconds > 0, not {interval!r}"
            )
        self.bucket = bucket
        self.prefix = prefix
        self.name = name or f"s3-{bucket}"
        self.interval = float(interval)
        self.pipeline = _pipeline(pipeline)
        self.select = select
        self.partition = partition
        self.existing = existing
        self._client = AwsClient("s3", endpoint_url=endpoint_url, session=session)

    def __repr__(self) -> str:
        return f"S3KeySensor(s3://{self.bucket}/{self.prefix}, name={self.name!r})"

    async def __aenter__(self) -> S3KeySensor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the S3 client (the next poll opens a new one)."""
        await self._client.aclose()

    async def objects(self) -> list[dict[str, Any]]:
        """Every object under the prefix: ``Key``, ``LastModified``, ``ETag``, ``Size``."""
        client = await self._client.get()
        found: list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            page: dict[str, Any] = await retrying(partial(client.list_objects_v2, **args))
            found += page.get("Contents", [])
            if not page.get("IsTruncated"):
                return found
            args["ContinuationToken"] = page["NextContinuationToken"]

    async def poll(self, cursor: str | None) -> SensorResult:
        """A run request per object modified since ``cursor``."""
        from flowstone.ext.schedule import RunRequest, SensorResult

        objects = await self.objects()
        since, seen = "", set[str]()
        if cursor is not None:
            state = json.loads(cursor)
            since, seen = state["mtime"], set(state["keys"])
        new = [o for o in objects if _is_new(o, since, seen)]
        new.sort(key=lambda o: (o["LastModified"], o["Key"]))
        newest = max((o["LastModified"].isoformat() for o in objects), default=since)
        newest = max(newest, since)
        keys = sorted(
            {_version(o) for o in objects if o["LastModified"].isoformat() == newest}
            | (seen if newest == since else set())
        )
        next_cursor = json.dumps({"mtime": newest, "keys": keys})
        if cursor is None and not self.existing:
            return SensorResult(cursor=next_cursor)
        requests = [
            RunRequest(
                select=self.select,
                partition=None if self.partition is None else self.partition(o["Key"]),
                run_key=_version(o),
                tags={"s3.bucket": self.bucket, "s3.key": o["Key"]},
            )
            for o in new
        ]
        return SensorResult(run_requests=requests, cursor=next_cursor)


def _is_new(obj: dict[str, Any], since: str, seen: set[str]) -> bool:
    """Whether ``obj`` was modified after ``since``, or then but is not among ``seen``."""
    modified = obj["LastModified"].isoformat()
    return modified > since or (modified == since and _version(obj) not in seen)


def _version(obj: dict[str, Any]) -> str:
    """``key@etag``: one version of an object."""
    return f"{obj['Key']}@{str(obj.get('ETag', '')).strip(chr(34))}"


def _pipeline(pipeline: Any) -> fs.Pipeline | None:
    if pipeline is None or isinstance(pipeline, fs.Pipeline):
        return pipeline
    return fs.Pipeline(list(pipeline) if not isinstance(pipeline, fs.AssetDef) else [pipeline])
