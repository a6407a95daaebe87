"""to_jsonable: whatever goes in, json.dumps of what comes out never raises."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from decimal import Decimal

import numpy as np
import pandas as pd
import pydantic
from hypothesis import given
from hypothesis import strategies as st

from trading_pipeline.domain.jsonsafe import to_jsonable


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Fill:
    order_id: uuid.UUID
    price: Decimal
    at: dt.datetime


class OrderModel(pydantic.BaseModel):
    id: uuid.UUID
    client_order_id: str
    submitted_at: dt.datetime
    qty: Decimal
    legs: list[OrderModel] | None = None


def dumps(value: object) -> str:
    return json.dumps(to_jsonable(value), allow_nan=False)


def test_sdk_like_order_with_uuids_is_json_safe() -> None:
    """The seed's crash: an order model holding UUID and datetime objects written to a JSON column."""
    order_id = uuid.uuid4()
    at = dt.datetime(2026, 11, 24, 14, 30, tzinfo=dt.UTC)
    order = OrderModel(
        id=order_id,
        client_order_id="tp-x",
        submitted_at=at,
        qty=Decimal("1.5"),
        legs=[OrderModel(id=uuid.uuid4(), client_order_id="leg", submitted_at=at, qty=Decimal(1))],
    )
    result = json.loads(dumps({"order": order}))
    assert result["order"]["id"] == str(order_id)
    assert result["order"]["submitted_at"] == "2026-11-24T14:30:00+00:00"
    assert result["order"]["qty"] == "1.5"
    assert result["order"]["legs"][0]["client_order_id"] == "leg"


def test_scalars() -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    assert to_jsonable(Decimal("12.345000")) == "12.345000"
    assert to_jsonable(Decimal("0E-8")) == "0.00000000"  # a NUMERIC(20, 8) zero, shown as digits
    assert to_jsonable(Decimal("1E+3")) == "1000"
    assert to_jsonable(Decimal("NaN")) is None
    assert to_jsonable(float("inf")) is None
    assert to_jsonable(float("-inf")) is None
    assert to_jsonable(dt.datetime(2026, 1, 2, 9, 30, tzinfo=tz)) == "2026-01-02T09:30:00-05:00"
    assert to_jsonable(dt.date(2026, 1, 2)) == "2026-01-02"
    assert to_jsonable(dt.time(9, 30)) == "09:30:00"
    assert to_jsonable(dt.timedelta(minutes=2)) == 120.0
    assert to_jsonable(Color.RED) == "red" and to_jsonable(Level.LOW) == 1
    assert to_jsonable({3, 1, 2}) == [1, 2, 3]
    assert to_jsonable((1, "a")) == [1, "a"]
    assert to_jsonable(b"\x00\xff") == "AP8="
    assert to_jsonable(np.int64(7)) == 7 and to_jsonable(np.float32(0.5)) == 0.5
    assert to_jsonable(np.float64("nan")) is None
    assert to_jsonable(np.array([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert to_jsonable(np.bool_(True)) is True
    assert to_jsonable(pd.Timestamp("2026-01-02 09:30", tz="America/New_York")) == "2026-01-02T09:30:00-05:00"
    assert to_jsonable(pd.NaT) is None and to_jsonable(pd.NA) is None
    assert to_jsonable(np.datetime64("NaT")) is None
    assert to_jsonable(Fill(uuid.UUID(int=1), Decimal(1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))["price"] == "1"
    assert to_jsonable(ValueError("boom")) == "ValueError: boom"


def test_non_string_keys_do_not_collide() -> None:
    key = uuid.UUID(int=5)
    result = to_jsonable({1: "int", "1": "str", None: "none", key: "uuid", (1, 2): "tuple", Color.RED: "enum"})
    assert sorted(result.values()) == sorted(["int", "str", "none", "uuid", "tuple", "enum"])
    assert result[str(key)] == "uuid" and result["null"] == "none" and result["red"] == "enum"


def test_cycles_terminate() -> None:
    a: dict[str, object] = {}
    a["self"] = a
    b: list[object] = [1]
    b.append(b)
    assert json.loads(dumps([a, b])) == [{"self": "<cycle>"}, [1, "<cycle>"]]


def test_dataframe_and_series() -> None:
    frame = pd.DataFrame({"symbol": ["A", "B"], "price": [1.5, math.nan]})
    assert to_jsonable(frame) == [{"symbol": "A", "price": 1.5}, {"symbol": "B", "price": None}]
    assert to_jsonable(pd.Series({"x": 1})) == {"x": 1}


def test_unknown_objects_become_text() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert to_jsonable(Opaque()) == "opaque!"
    assert to_jsonable(Broken()) == "<unprintable Broken>"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=20),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-4))])),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.sampled_from([Color.RED, Color.BLUE, Level.LOW, pd.NaT, pd.NA, np.float64("nan"), np.int32(3)]),
    st.complex_numbers(),
)
hashable = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.uuids(),
    st.booleans(),
    st.sampled_from([Color.RED, Level.LOW]),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.floats(),
    st.decimals(allow_nan=False),
    st.dates(),
)
nests = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(hashable, children, max_size=5),
        st.frozensets(hashable, max_size=5),
        st.builds(lambda xs: np.array(xs, dtype=float), st.lists(st.floats(), max_size=4)),
    ),
    max_leaves=30,
)


@given(nests)
def test_json_dumps_never_raises(value: object) -> None:
    text = dumps(value)
    assert json.loads(text) == to_jsonable(value)
