"""Plain Python values to DynamoDB's typed JSON and back, and cursor keys as JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowstone.ext.dynamodb._values import from_dynamo, key_from_json, key_to_json, to_dynamo

# Whole floats come back as ints (DynamoDB keeps decimals, not binary floats), and
# DynamoDB holds magnitudes from 1e-130 to 1e125 only: neither is drawn here.
numbers = st.integers(-(10**30), 10**30) | st.floats(
    allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100
).filter(lambda x: not x.is_integer() and abs(x) > 1e-100)
plain_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=10) | st.binary(min_size=1),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(plain_values)
def test_plain_values_round_trip(value: Any) -> None:
    back = from_dynamo({"v": to_dynamo(value)})["v"]
    assert back == value
    assert type(back) is type(value)


def test_a_number_dynamodb_cannot_hold_is_a_configuration_error() -> None:
    import pytest

    import flowstone as fs
    from flowstone.ext.dynamodb import DynamoDBItemReader

    with pytest.raises(fs.ConfigurationError, match="values"):
        DynamoDBItemReader("t", values={":tiny": 1e-200})


def test_a_number_no_float_holds_stays_a_decimal() -> None:
    exact = Decimal("0.1000000000000000000001")
    assert from_dynamo({"n": {"N": str(exact)}}) == {"n": exact}
    assert from_dynamo({"n": {"N": "0.1"}, "m": {"N": "12"}}) == {"n": 0.1, "m": 12}
    assert from_dynamo({"n": to_dynamo(3.0)}) == {"n": 3} and to_dynamo(3.0) == {"N": "3.0"}


@given(st.dictionaries(st.sampled_from(["pk", "sk"]), st.text() | st.integers() | st.binary()))
def test_cursor_keys_survive_json(key: dict[str, Any]) -> None:
    typed = {name: to_dynamo(value) for name, value in key.items()}
    assert key_from_json(json.loads(json.dumps(key_to_json(typed)))) == typed
