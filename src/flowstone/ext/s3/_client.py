"""One aioboto3 client per owner: opened once (lazily or on ``__aenter__``), closed on ``aclose``.

Also the seam where botocore's errors are read: :func:`error_code` and :func:`is_retryable`
classify them, :func:`retrying` retries throttling and transient server errors with
exponential backoff and jitter. botocore's own retries are turned off (``max_attempts=1``)
so that an attempt is never multiplied by two retry layers.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
import aiohttp
import anyio
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "CREDENTIAL_ERRORS",
    "DROPPED",
    "RESUMES",
    "AwsClient",
    "THROTTLING_ERRORS",
    "endpoint_from_env",
    "error_code",
    "is_retryable",
    "retrying",
]

T = TypeVar("T")

#: Error codes that mean "slow down": retried with backoff.
THROTTLING_ERRORS = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
    }
)

#: Error codes that mean the credentials were refused.
CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AccessDeniedException",
        "403",  # a HEAD request's refusal has no body, only its status
        "Forbidden",
    }
)


#: What reading a response body that stopped arriving raises.
DROPPED: tuple[type[BaseException], ...] = (
    ResponseStreamingError,
    IncompleteReadError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
    ConnectionError,
    TimeoutError,
)


def endpoint_from_env(service: str) -> str | None:
    """The endpoint the environment names for ``service``: ``AWS_ENDPOINT_URL_<SERVICE>``,
    else ``AWS_ENDPOINT_URL`` (read when a client opens, never at import)."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    return specific or os.environ.get("AWS_ENDPOINT_URL") or None


#: How many times one object's body that dropped mid-way is picked up again.
RESUMES = 5


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``"NoSuchKey"``), else ``None``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code")
        return str(code) if code is not None else None
    return None


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is throttling (``SlowDown``, ``ThrottlingException``, HTTP 429/503),
    a transient server error (HTTP 500/502/504) or a dropped connection."""
    if isinstance(exc, ConnectionClosedError | EndpointConnectionError | ReadTimeoutError):
        return True
    if error_code(exc) in THROTTLING_ERRORS:
        return True
    return _status(exc) in (429, 500, 502, 503, 504)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 8,
    initial_delay: float = 0.05,
    max_delay: float = 5.0,
) -> T:
    """Await ``call()``, again after a backoff while it fails with a retryable error.

    Delays double from ``initial_delay`` up to ``max_delay``, with full jitter.

    :raises Exception: the last error, once ``attempts`` are used or it is not retryable
    """
    delay = initial_delay
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (ClientError, BotoCoreError) as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
        await anyio.sleep(random.uniform(0, delay))
        delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")  # pragma: no cover


class AwsClient:
    """An aioboto3 client of one service, created on first use and kept until :meth:`aclose`.

    :param service: ``"s3"`` or ``"dynamodb"``
    :param endpoint_url: the endpoint; default ``AWS_ENDPOINT_URL_<SERVICE>`` or
        ``AWS_ENDPOINT_URL`` when the client opens, else AWS
    :param region_name: the region; default the environment's
    :param session: an ``aioboto3.Session`` to use (credentials, profile); default a new one
    :param client_options: further ``session.client(...)`` arguments
    """

    def __init__(
        self,
        service: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: aioboto3.Session | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self._endpoint_url = endpoint_url
        self._region_name = region_name
        self._session = session
        self._options = dict(client_options or {})
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock: anyio.Lock | None = None
        self.opened = 0

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint given, else the environment's (``None``: AWS)."""
        return self._endpoint_url or endpoint_from_env(self.service)

    async def get(self) -> Any:
        """The open client (opened now if it is not)."""
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._client is None:
                await self._open()
        return self._client

    async def _open(self) -> None:
        session = self._session or aioboto3.Session()
        options = dict(self._options)
        options.setdefault(
            "config",
            Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=64),
        )
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self._region_name:
            options["region_name"] = self._region_name
        elif not (os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")):
            options.setdefault("region_name", "us-east-1")
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(session.client(self.service, **options))
        self._stack, self._client = stack, client
        self.opened += 1

    async def aclose(self) -> None:
        """Close the client; the next :meth:`get` opens a new one."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()


async def get_rest(
    client: Any, bucket: str, key: str, received: int, etag: str | None
) -> dict[str, Any] | None:
    """``GetObject`` of ``key`` from byte ``received`` on (a body that dropped mid-way),
    if the object is still the one being read (``If-Match`` its ``etag``).

    :return: the response, or ``None`` when nothing is left (it dropped just at the end)
    :raises Exception: ``PreconditionFailed`` when the object was replaced meanwhile
    """
    args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes={received}-"}
    if etag:
        args["IfMatch"] = etag
    try:
        response: dict[str, Any] = await retrying(lambda: client.get_object(**args))
    except Exception as exc:
        if error_code(exc) != "InvalidRange":
            raise
        return None
    return response
