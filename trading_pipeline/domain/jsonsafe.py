"""to_jsonable(): make any payload safe for a JSON column or Dagster metadata.

The seed app crashed writing an order object (UUIDs, datetimes) into a JSON column. Everything that is
persisted or shown goes through this function first: it never raises for any input, and it never loses
information silently (NaN/inf become null because JSON has no spelling for them).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import math
import sys
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

_CYCLE = "<cycle>"
MAX_DEPTH = 100  # deeper nests are cut (and say so): json.dumps and Python's stack have limits too
_TOO_DEEP = f"<nested deeper than {MAX_DEPTH} levels>"


def to_jsonable(obj: Any) -> JsonValue:
    """Convert `obj` into plain JSON types (dict with str keys, list, str, int, float, bool, None)."""
    return _convert(obj, frozenset())


def clean_text(text: str) -> str:
    """Text every JSON store accepts: PostgreSQL's JSONB refuses NUL and lone surrogates, so one such character
    in a broker payload would fail the whole write. They become U+FFFD (visible, not silently dropped)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _convert(obj: Any, seen: frozenset[int]) -> JsonValue:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return clean_text(str(obj))
    if isinstance(obj, int) and not isinstance(obj, enum.Enum):
        return int(obj)
    if isinstance(obj, float) and not isinstance(obj, enum.Enum):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Decimal):
        # Money stays exact: a string, not a float — in plain digits ("0.00000000", not "0E-8", which is what a
        # NUMERIC(20, 8) zero reads back as), unless the exponent would make the digits absurdly long.
        if not obj.is_finite():
            return None
        return format(obj, "f") if abs(obj.as_tuple().exponent) <= 40 else str(obj)  # type: ignore[arg-type]
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _convert(obj.value, seen)
    if _is_missing(obj):
        return None
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, complex):
        return [_convert(obj.real, seen), _convert(obj.imag, seen)]

    if id(obj) in seen:
        return _CYCLE
    if len(seen) >= MAX_DEPTH:
        return _TOO_DEEP
    inner = seen | {id(obj)}

    if isinstance(obj, Mapping):
        return _convert_mapping(obj.items(), inner)
    if isinstance(obj, list | tuple):
        return [_convert(item, inner) for item in obj]
    if isinstance(obj, set | frozenset):
        items = [_convert(item, inner) for item in obj]
        return sorted(items, key=_sort_key)

    numpy_value = _from_numpy(obj, inner)
    if numpy_value is not _NOT_HANDLED:
        return numpy_value
    pandas_value = _from_pandas(obj, inner)
    if pandas_value is not _NOT_HANDLED:
        return pandas_value
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        try:
            return _convert(model_dump(), inner)
        except Exception:  # a broken model still gets recorded, as text
            return clean_text(repr(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _convert_mapping(((f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj)), inner)
    if isinstance(obj, BaseException):
        return clean_text(f"{type(obj).__name__}: {obj}")
    try:
        return clean_text(str(obj))
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def _convert_mapping(items: Any, seen: frozenset[int]) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for key, value in items:
        name = _key_text(key, seen)
        # Two keys that print the same (1 and "1") must not overwrite each other.
        unique, n = name, 1
        while unique in out:
            n += 1
            unique = f"{name}#{n}"
        out[unique] = _convert(value, seen)
    return out


def _key_text(key: Any, seen: frozenset[int]) -> str:
    if isinstance(key, str):
        return clean_text(key)
    converted = _convert(key, seen)
    if isinstance(converted, str):
        return converted
    if converted is None:
        return "null"
    if isinstance(converted, bool):
        return "true" if converted else "false"
    return str(converted)


def _sort_key(value: JsonValue) -> tuple[str, str]:
    return (type(value).__name__, repr(value))


class _NotHandled:
    pass


_NOT_HANDLED = _NotHandled()


def _is_missing(obj: Any) -> bool:
    """pandas NA/NaT and numpy NaT, without importing pandas when it is not loaded."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and (obj is pandas.NA or obj is pandas.NaT):
        return True
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.datetime64 | numpy.timedelta64):
        return bool(numpy.isnat(obj))
    return False


def _from_numpy(obj: Any, seen: frozenset[int]) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return _NOT_HANDLED
    if isinstance(obj, numpy.ndarray):
        return [_convert(item, seen) for item in obj.tolist()]
    if isinstance(obj, numpy.datetime64):
        return str(obj)
    if isinstance(obj, numpy.generic):
        return _convert(obj.item(), seen)
    return _NOT_HANDLED


def _from_pandas(obj: Any, seen: frozenset[int]) -> Any:
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return _NOT_HANDLED
    if isinstance(obj, pandas.DataFrame):
        return [_convert_mapping(row.items(), seen) for row in obj.to_dict(orient="records")]
    if isinstance(obj, pandas.Series):
        return _convert_mapping(obj.items(), seen)
    if isinstance(obj, pandas.Timedelta):
        return obj.total_seconds()
    if isinstance(obj, pandas.Interval | pandas.Period):
        return str(obj)
    return _NOT_HANDLED
