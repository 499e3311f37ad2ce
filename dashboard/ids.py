"""Ids read from a request: only a whole number the database's integer keys can hold ever reaches a query."""

from __future__ import annotations

from typing import Any

# Every primary key is a BigAutoField: a signed 64-bit integer on SQLite and PostgreSQL alike. A larger
# number sent to the database is an overflow error there (a 500), not "no such row".
MAX_ID = 2**63 - 1
MAX_ID_DIGITS = len(str(MAX_ID))


def parse_id(value: Any) -> int | None:
    """`value` as a positive id, or None when it cannot be one: not ASCII digits ("²" and "٣" pass
    str.isdigit(), and int() refuses the first), zero, or past MAX_ID (int() refuses 5,000 digits too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS:
        number = int(value)
    else:
        return None
    return number if 0 < number <= MAX_ID else None
