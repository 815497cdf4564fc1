"""Question/answer datasets as JSONL, and checking a model's answer against the reference with
Hugging Face's ``math-verify``, so MATH- and AIME-style files work as they are.

One JSON object per line::

    {"question": "What is 1/2 + 1/4?", "answer": "\\\\frac{3}{4}"}
    {"id": "aime-2024-1", "question": "...", "answer": 204}

* ``question``: a non-empty string (required).
* ``answer``: the reference, a string in LaTeX or plain notation, or a JSON number (AIME files
  write integers); kept as text (required).
* ``id``: any JSON value (optional). Any other key is kept in ``meta``.

Blank lines are skipped; any other bad line stops reading with a ValueError naming the file and
the line. :func:`check_answer` never raises on a model's text: what cannot be read is wrong.

:func:`read_source` reads the same rows from a JSONL file, a Hugging Face ``datasets`` folder
(``save_to_disk``) or a dataset id in the local cache, with the question and answer columns
named as the source names them (MATH-500: ``problem``/``answer``; AIME: ``Problem``/``Answer``).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from math_verify import parse, verify
from math_verify.errors import TimeoutException

from envs import jsonl_rows as rows

#: Only the tail of a model's text is read: the final answer is at the end, and math-verify's
#: extraction slows down on huge inputs (350,000 characters of "\\boxed{" took 2.6 s).
MAX_TEXT_CHARS = 32_768
#: math-verify's own default, per parse and per comparison (sympy can run for ever on
#: ``(10^{100})!``).
DEFAULT_TIMEOUT_S = 5


@dataclass(frozen=True)
class QAItem:
    """One row: the question, the reference answer as text, its id and any other keys."""

    question: str
    answer: str
    id: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def row_to_item(row: Any) -> QAItem:
    """Parse one decoded row; ValueError says what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question={question!r}: expected a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f"answer={answer!r}: expected a string or a number")
    if isinstance(answer, str) and not answer.strip():
        raise ValueError(f"answer={answer!r}: expected a non-empty reference answer")
    meta = {k: v for k, v in row.items() if k not in ("id", "question", "answer")}
    return QAItem(question, str(answer), row.get("id"), meta)


def item_to_row(item: QAItem) -> dict[str, Any]:
    """The row for ``item`` (``id`` only when known, then the other keys)."""
    row: dict[str, Any] = {} if item.id is None else {"id": item.id}
    row.update(question=item.question, answer=item.answer)
    row.update(item.meta)
    return row


def loads(line: str) -> QAItem:
    """Parse one JSONL line."""
    return row_to_item(rows.json_line(line))


def read_jsonl(path: str | os.PathLike) -> list[QAItem]:
    """Every row of a JSONL file (blank lines skipped); ValueError names the file and line."""
    return rows.read_jsonl(path, loads)


def write_jsonl(path: str | os.PathLike, items: Iterable[QAItem]) -> int:
    """Write one row per item; returns the number of rows written."""
    return rows.write_lines(path, (json.dumps(item_to_row(item), ensure_ascii=False) for item in items))


def rename_columns(row: Any, question: str, answer: str) -> Any:
    """``row`` with its ``question`` and ``answer`` columns under the names :func:`row_to_item`
    reads; ValueError naming a column the row lacks (and the columns it has)."""
    if not isinstance(row, dict):
        return row
    for column in (question, answer):
        if column not in row:
            raise ValueError(f"no column {column!r} (columns: {', '.join(map(str, row))})")
    if (question, answer) == ("question", "answer"):
        return row
    out = {k: v for k, v in row.items() if k not in (question, answer, "question", "answer")}
    out.update(question=row[question], answer=row[answer])
    return out


def read_source(source: str | os.PathLike, question: str = "question", answer: str = "answer",
                split: str | None = None) -> list[QAItem]:
    """Every row of ``source``: a ``.jsonl``/``.json`` file, a ``datasets`` folder written by
    ``save_to_disk`` (a DatasetDict needs ``split`` unless it has one split, or a ``test`` one),
    or else a dataset id that ``datasets.load_dataset`` finds (its local cache; set
    ``HF_DATASETS_OFFLINE=1`` to never download). ValueError, one line, naming what is wrong."""
    text = os.fspath(source)
    if text.endswith((".jsonl", ".json")) or os.path.isfile(text):
        if not os.path.isfile(text):
            raise ValueError(f"{text}: no such file")
        return rows.read_jsonl(text, lambda line: row_to_item(rename_columns(rows.json_line(line),
                                                                            question, answer)))
    data = _load_dataset(text, split)
    items = []
    for number, row in enumerate(data):
        try:
            items.append(row_to_item(rename_columns(dict(row), question, answer)))
        except ValueError as err:
            raise ValueError(f"{text}, row {number}: {err}") from None
    return items


def _load_dataset(source: str, split: str | None) -> Any:
    """A ``datasets.Dataset`` from a folder or a cached id (imported here: only these need it)."""
    import datasets

    try:
        if os.path.isdir(source):
            data = datasets.load_from_disk(source)
        else:
            data = datasets.load_dataset(source, split=split)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; one line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{source}: not a JSONL file, a datasets folder or a cached dataset id "
                         f"({first})") from None
    if isinstance(data, (datasets.DatasetDict, dict)):
        names = list(data)
        chosen = split or ("test" if "test" in names else names[0] if len(names) == 1 else None)
        if chosen not in names:
            raise ValueError(f"{source}: split={split!r}: expected one of {names}")
        data = data[chosen]
    elif split is not None and os.path.isdir(source):
        raise ValueError(f"{source}: split={split!r}: the folder holds one dataset, not splits")
    return data


# ----- answers -----------------------------------------------------------------------------------
def _timeout(timeout_s: int | None) -> int | None:
    # math-verify times out with signal.alarm, which only works in the main thread: elsewhere it
    # raises ValueError on every call. Off the main thread we run without a timeout instead.
    return timeout_s if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_reference(reference: str, timeout_s: int | None) -> tuple[Any, ...]:
    """The parsed reference, cached: every sample of one question shares it. A bare reference is
    read as LaTeX math (``$...$``, so ``\\frac{1}{2}``, ``x^2+1`` and ``\\sqrt{2}`` parse);
    one that already holds ``$`` or ``\\boxed`` is read as written; one that nothing parses is
    kept as its text, which math-verify then compares as a string."""
    wrapped = reference if ("$" in reference or "\\boxed" in reference) else f"${reference}$"
    for candidate in (wrapped, reference):
        gold = parse(candidate, parsing_timeout=timeout_s)
        if gold:
            return tuple(gold)
    return (reference.strip(),)


def check_answer(text: Any, reference: str | int | float,
                 timeout_s: int | None = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the model's ``text`` gives the ``reference`` answer, by math-verify: its final
    ``\\boxed{...}`` first, else an anchored phrase such as "the final answer is 3" or the last
    expression it finds, compared to the reference symbolically and numerically
    (``\\boxed{\\frac{1}{2}}`` matches ``0.5``).

    Only the last :data:`MAX_TEXT_CHARS` characters are read. ``timeout_s`` bounds each parse
    and comparison in the main thread (off it math-verify cannot time out; see ``_timeout``).
    Never raises on ``text``: text that is not a string, that parses to nothing, that times out
    or that makes math-verify or sympy fail is simply wrong.
    """
    if not isinstance(text, str) or isinstance(reference, bool):
        return False
    timeout_s = _timeout(timeout_s)
    try:
        gold = _parse_reference(str(reference), timeout_s)
        pred = parse(text[-MAX_TEXT_CHARS:], parsing_timeout=timeout_s)
        return bool(pred) and bool(verify(list(gold), pred, timeout_seconds=timeout_s))
    except (Exception, TimeoutException):  # any failure on model text means "wrong"
        return False


__all__ = ["QAItem", "MAX_TEXT_CHARS", "DEFAULT_TIMEOUT_S", "row_to_item", "item_to_row", "loads",
           "read_jsonl", "write_jsonl", "rename_columns", "read_source", "check_answer"]
