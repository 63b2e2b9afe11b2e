"""``DynamoDBItemReader``: scatter items from a DynamoDB query or scan, resumable by cursor.

A cursor is JSON: ``{"segments": [<state>, ...]}``, one state per scan segment (a query
has one): ``null`` (not started), ``{"key": <LastEvaluatedKey>}`` (resume there) or
``"done"``. Filters apply after DynamoDB reads a page, so a page may come back empty but
with a ``LastEvaluatedKey``; that is not the end, and the reader reads on until it has
items or every segment is done.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Self

import anyio

from flowstone import ConfigurationError, StorageError
from flowstone.ext.s3 import AwsClient, retrying
from flowstone.protocols import ItemPage

from ._values import from_dynamo, key_from_json, key_to_json, to_dynamo

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    import aioboto3

__all__ = ["DynamoDBError", "DynamoDBItemReader"]

_DONE = "done"


class DynamoDBError(StorageError):
    """A DynamoDB read failed; names the table (and index).

    :param reason: ``"missing table"``, ``"credentials"``, ``"bad request"`` or ``"error"``
    """

    def __init__(
        self, message: str, *, table: str, index: str | None = None, reason: str = "error"
    ) -> None:
        self.table = table
        self.index = index
        self.reason = reason
        where = f"DynamoDB table {table!r}" + (f" index {index!r}" if index else "")
        super().__init__(f"{where}: {message}")


class DynamoDBItemReader:
    """An ``ItemReader`` over a DynamoDB query or scan, for ``@scatter(reader=...)``.

    ``DynamoDBItemReader(table="events", key_condition="pk = :p", filter="kind = :k",
    values={":p": "a", ":k": "x"})`` queries; without ``key_condition`` it scans. Values
    are plain Python (``str``, ``int``, ``float``, ``bytes``, ``bool``, ``None``, lists,
    dicts, sets); items come back as plain Python dicts (numbers as ``int`` or ``float``
    when the float's shortest text is the same number, else ``Decimal``).

    The cursor holds each segment's ``LastEvaluatedKey``, so a durable scatter killed
    mid-way resumes where it stopped. ``segments=N`` runs a parallel scan of N segments,
    read concurrently, each with its own key in the cursor; a page holds the items of each
    segment's next response, in segment order. Throttling
    (``ProvisionedThroughputExceededException``, ``ThrottlingException``) is retried with
    backoff.

    The client is opened on first read and kept until :meth:`aclose` (``async with
    reader``), or until the runtime it is given to closes (``fs.Runtime(plugins=[reader])``).

    :param table: the table name
    :param key_condition: a ``KeyConditionExpression``: query instead of scan
    :param filter: a ``FilterExpression``
    :param values: the expressions' values by placeholder (``{":p": "a"}``)
    :param names: the expressions' attribute names by placeholder (``{"#t": "type"}``)
    :param index: a secondary index to read
    :param segments: parallel scan segments (scans only)
    :param consistent: strongly consistent reads (not on global secondary indexes)
    :param projection: a ``ProjectionExpression`` (only these attributes)
    :param endpoint_url: the endpoint; default ``AWS_ENDPOINT_URL_DYNAMODB`` or
        ``AWS_ENDPOINT_URL``, else AWS
    :param region_name: the region; default the environment's (``us-east-1`` if none)
    :param session: an ``aioboto3.Session``
    :param client_options: further ``session.client("dynamodb", ...)`` arguments
    :raises ConfigurationError: segments with a query, fewer than one segment, or values
        DynamoDB cannot hold
    """

    def __init__(
        self,
        table: str,
        *,
        key_condition: str | None = None,
        filter: str | None = None,
        values: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
        index: str | None = None,
        segments: int = 1,
        consistent: bool = False,
        projection: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: aioboto3.Session | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigurationError(f"DynamoDBItemReader: table must be a name, got {table!r}")
        if not isinstance(segments, int) or segments < 1:
            raise ConfigurationError(
                f"DynamoDBItemReader: segments must be a positive int, got {segments!r}"
            )
        if key_condition is not None and segments != 1:
            raise ConfigurationError(
                "DynamoDBItemReader: segments are for scans; a query (key_condition) has one"
            )
        self.table = table
        self.key_condition = key_condition
        self.filter = filter
        self.index = index
        self.segments = segments
        self.consistent = consistent
        self._request: dict[str, Any] = {"TableName": table}
        if key_condition is not None:
            self._request["KeyConditionExpression"] = key_condition
        if filter is not None:
            self._request["FilterExpression"] = filter
        if projection is not None:
            self._request["ProjectionExpression"] = projection
        if index is not None:
            self._request["IndexName"] = index
        if consistent:
            self._request["ConsistentRead"] = True
        if names:
            self._request["ExpressionAttributeNames"] = dict(names)
        if values:
            try:
                typed = {name: to_dynamo(value) for name, value in values.items()}
            except (TypeError, ArithmeticError) as exc:  # ArithmeticError: out of range
                raise ConfigurationError(
                    f"DynamoDBItemReader: values: DynamoDB cannot hold one: {exc!r}"
                ) from exc
            self._request["ExpressionAttributeValues"] = typed
        self._client = AwsClient(
            "dynamodb",
            endpoint_url=endpoint_url,
            region_name=region_name,
            session=session,
            client_options=client_options,
        )
        self.requests = 0

    def __repr__(self) -> str:
        kind = "query" if self.key_condition is not None else "scan"
        return f"DynamoDBItemReader(table={self.table!r}, {kind}, segments={self.segments})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (the next read opens a new one)."""
        await self._client.aclose()

    async def count(self) -> int | None:
        """``None``: counting a query or a scan reads every item."""
        return None

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[dict[str, Any]]:
        """Up to ``limit`` items after ``cursor`` (``None``: from the start).

        :raises DynamoDBError: the table is missing, the request is refused, or the
            cursor is not one this reader returned
        """
        states = self._parse_cursor(cursor)
        limit = max(1, limit)
        items: list[dict[str, Any]] = []
        found: dict[int, list[dict[str, Any]]] = {}
        while not items and any(s != _DONE for s in states):
            active = [i for i, s in enumerate(states) if s != _DONE]
            share = max(1, math.ceil(limit / len(active)))
            found.clear()

            async def read(segment: int, share: int = share) -> None:
                found[segment], states[segment] = await self._read(segment, states[segment], share)

            if len(active) == 1:
                await read(active[0])
            else:
                async with anyio.create_task_group() as tg:
                    for segment in active:
                        tg.start_soon(read, segment)
            for segment in sorted(found):
                items.extend(found[segment])
        if all(s == _DONE for s in states):
            return ItemPage(items, None)
        return ItemPage(items, json.dumps({"segments": states}, separators=(",", ":")))

    async def _read(self, segment: int, state: Any, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """One Query/Scan response of ``segment`` from ``state``: its items, the new state."""
        request = dict(self._request, Limit=limit)
        if state is not None:
            request["ExclusiveStartKey"] = key_from_json(state["key"])
        if self.segments > 1:
            request["Segment"] = segment
            request["TotalSegments"] = self.segments
        client = await self._client.get()
        call = client.query if self.key_condition is not None else client.scan
        try:
            response = await retrying(lambda: call(**request))
        except Exception as exc:
            raise self._error(exc) from exc
        self.requests += 1
        items = [from_dynamo(item) for item in response.get("Items", ())]
        last = response.get("LastEvaluatedKey")
        return items, ({"key": key_to_json(last)} if last else _DONE)

    def _error(self, exc: BaseException) -> Exception:
        response = getattr(exc, "response", None)
        code = (response or {}).get("Error", {}).get("Code") if response else None
        if code == "ResourceNotFoundException":
            reason, message = "missing table", "the table does not exist"
        elif code in ("UnrecognizedClientException", "AccessDeniedException"):
            reason, message = "credentials", f"the credentials were refused ({code})"
        elif code == "ValidationException":
            reason, message = "bad request", f"DynamoDB refused the request: {exc}"
        else:
            reason, message = "error", f"{type(exc).__name__}: {exc}"
        return DynamoDBError(message, table=self.table, index=self.index, reason=reason)

    def _parse_cursor(self, cursor: str | None) -> list[Any]:
        if cursor is None:
            return [None] * self.segments
        try:
            data = json.loads(cursor)
            states = data["segments"]
            if not isinstance(states, list) or len(states) != self.segments:
                raise ValueError("wrong number of segments")
            for state in states:
                if not (state is None or state == _DONE or isinstance(state.get("key"), dict)):
                    raise ValueError("a segment state is not a key")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DynamoDBError(
                f"not a cursor this reader returned ({exc}): {cursor!r}",
                table=self.table,
                index=self.index,
            ) from None
        return list(states)
