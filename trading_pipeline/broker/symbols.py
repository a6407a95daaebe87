"""Symbol validation before a multi-symbol request: one malformed symbol makes Alpaca's data API fail
the whole request with 400, so malformed symbols are set aside (with the reason) and never sent."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_SYMBOL_LENGTH = 20
# Upper-case letters first, then letters, digits and the class separators Alpaca uses (BRK.B, BRK/B).
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,19}$")


def symbol_problem(symbol: object) -> str | None:
    """Why `symbol` must not be sent, or None when it is well formed."""
    if not isinstance(symbol, str):
        return f"not a string ({type(symbol).__name__})"
    if not symbol:
        return "empty"
    if symbol != symbol.strip():
        return "has surrounding whitespace"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"longer than {MAX_SYMBOL_LENGTH} characters"
    if symbol != symbol.upper():
        return "has lower-case letters (symbols are upper case)"
    if not SYMBOL_PATTERN.match(symbol):
        return "has characters other than A-Z, 0-9, '.', '-', '/' or does not start with a letter"
    return None


def split_symbols(symbols: Iterable[object]) -> tuple[list[str], dict[str, str]]:
    """(well-formed symbols, deduplicated in first-seen order; {malformed symbol: reason})."""
    valid: dict[str, None] = {}
    rejected: dict[str, str] = {}
    for symbol in symbols:
        problem = symbol_problem(symbol)
        if problem is None and isinstance(symbol, str):
            valid[symbol] = None
        else:
            rejected[str(symbol)] = problem or "not a string"
    return list(valid), rejected
