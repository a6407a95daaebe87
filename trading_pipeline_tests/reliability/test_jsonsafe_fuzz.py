"""`to_jsonable` on adversarial nests (hypothesis): it never raises, its output is strict JSON with string keys,
it is a fixed point, and it survives a round trip through the JSON columns of both databases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store.database import Database

pytestmark = pytest.mark.reliability


class Colour(enum.Enum):
    RED = "red"
    NAN = float("nan")


@dataclasses.dataclass
class Box:
    content: Any
    note: str = "box"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


class BadModel:
    """Looks like a pydantic model whose dump fails."""

    def model_dump(self) -> Any:
        raise ValueError("broken model")

    def __repr__(self) -> str:
        return "BadModel()"


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.just(Decimal("sNaN")),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.uuids(),
    st.datetimes(),
    st.datetimes().map(_aware),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.sampled_from([Colour.RED, Colour.NAN, pd.NA, pd.NaT, np.datetime64("NaT"), np.float64("nan"), np.int64(7)]),
    st.builds(Unprintable),
    st.builds(BadModel),
)
hashable = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=6), st.uuids()
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashable, children, max_size=4),
        st.dictionaries(st.tuples(hashable, hashable), children, max_size=3),
        st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4),
        st.builds(Box, children),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4).map(np.array),
        st.dictionaries(st.text(max_size=4), st.floats(allow_nan=True), max_size=3).map(pd.Series),
    )


nests = st.recursive(leaves, containers, max_leaves=30)


def only_json_types(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(only_json_types(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and only_json_types(v) for k, v in value.items())
    return False


@settings(max_examples=300, deadline=None)
@given(nests)
def test_any_nest_becomes_strict_json(value: Any) -> None:
    converted = to_jsonable(value)
    assert only_json_types(converted)
    json.dumps(converted, allow_nan=False)  # strict JSON: no NaN, no Infinity
    assert to_jsonable(converted) == converted  # a fixed point: converting twice changes nothing


def test_cycles_are_cut_not_followed() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    mapping: dict[str, Any] = {"self": None}
    mapping["self"] = mapping
    box = Box(None)
    box.content = box
    converted = to_jsonable({"list": loop, "dict": mapping, "box": box})
    json.dumps(converted, allow_nan=False)
    assert converted["list"] == [1, "<cycle>"]


def test_a_very_deep_nest_does_not_raise() -> None:
    deep: list[Any] = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]
    json.dumps(to_jsonable(deep))


json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
stored_nests = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), json_text, st.decimals(allow_nan=True)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(json_text, children, max_size=3)),
    max_leaves=15,
)


def test_decision_run_metadata_round_trips_through_the_json_column(db: Database) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(stored_nests)
    def round_trip(value: Any) -> None:
        run = runs_repo.start_decision_run(db, kind="fuzz", run_id="fuzz")
        runs_repo.finish_decision_run(db, run, {"value": value})
        assert runs_repo.get_decision_run_meta(db, run) == to_jsonable({"value": value})

    round_trip()


@pytest.mark.postgres
@pytest.mark.parametrize("text", ["NUL \x00 inside", "lone surrogate \ud800"])
def test_text_postgres_refuses_in_json_still_stores(postgres_server_url: str, text: str) -> None:
    with Database(postgres_server_url) as db:
        run = runs_repo.start_decision_run(db, kind="fuzz", run_id="fuzz")
        runs_repo.finish_decision_run(db, run, {"broker_field": text})
        assert runs_repo.get_decision_run_meta(db, run)["broker_field"]


def test_uuid_and_datetime_keys_and_values_survive() -> None:
    key = uuid.UUID(int=1)
    converted = to_jsonable({key: dt.datetime(2026, 11, 24, tzinfo=dt.UTC), 1: "int", "1": "str"})
    assert converted == {str(key): "2026-11-24T00:00:00+00:00", "1": "int", "1#2": "str"}
