"""Fixtures for the DynamoDB plugin: tables on the moto server of ``flowstone.testing``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("aioboto3")

from flowstone.testing import MotoServer


@pytest.fixture
def events_table(moto_server: MotoServer) -> str:
    """A table ``pk`` (hash) + ``n`` (range, a number) with a GSI on ``kind``, holding
    groups ``a`` (40 items) and ``b`` (25 items)."""
    client = moto_server.client("dynamodb")
    name = f"events-{uuid.uuid4().hex[:12]}"
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "kind", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_kind",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "n", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for group, count in (("a", 40), ("b", 25)):
        for n in range(count):
            item: dict[str, Any] = {
                "pk": {"S": group},
                "n": {"N": str(n)},
                "kind": {"S": "x" if n % 10 == 9 else "y"},
                "price": {"N": f"{n}.25"},
                "tags": {"SS": ["t1", f"t{n}"]},
                "blob": {"B": bytes([n])},
                "nested": {
                    "M": {"ok": {"BOOL": True}, "list": {"L": [{"N": "1"}, {"NULL": True}]}}
                },
            }
            client.put_item(TableName=name, Item=item)
    return name
