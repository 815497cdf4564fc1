"""What the dataset and generator modules share: JSON-lines files (read with errors that name the
file and line, written one row a line) and integer parameters checked with a clear error."""

from __future__ import annotations

import json
import operator
import os
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


def as_int(value: Any, name: str) -> int:
    """``value`` as an int (``numpy`` integers too, never a bool); ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name}={value!r}: expected an integer") from None


def json_line(line: str) -> Any:
    """One JSONL line decoded; ValueError ("not JSON: ...") if it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from None


def read_jsonl(path: str | os.PathLike, parse_line: Callable[[str], T]) -> list[T]:
    """``parse_line`` of every non-blank line; any ValueError (bad JSON, a bad row, bad UTF-8) is
    re-raised naming the file and the line. Read as bytes and decoded per line, so that bad
    UTF-8 is reported with its line too."""
    out = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
                if line.strip():
                    out.append(parse_line(line))
            except ValueError as err:  # UnicodeDecodeError is a ValueError
                raise ValueError(f"{os.fspath(path)}, line {number}: {err}") from None
    return out


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    """Write one line each (the rows are rendered before the file is opened, so a row that fails
    to render leaves no half-written file); returns how many."""
    lines = list(lines)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return len(lines)
