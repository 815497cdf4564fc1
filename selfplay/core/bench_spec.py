"""What a benchmark entry says (pure, but for :func:`problem_counts`, which reads the sources).

A benchmark is named and points at its rows: ``NAME=SOURCE`` on the command line
(``selfplay eval --bench math500=data/math500.jsonl``), ``eval.bench: {NAME: SOURCE}`` in a config.
SOURCE is a JSONL file, a ``datasets`` folder or a cached dataset id (:func:`envs.qa_data.read_source`),
optionally followed by ``,key=value`` options; in YAML the entry may be a mapping instead::

    eval:
      bench:
        arith: envs/benchmarks/arith.jsonl
        math500: {source: data/MATH-500, question: problem, answer: answer, max_new_tokens: 4096}

Options: ``question`` / ``answer`` (column names), ``split``, ``template`` (with ``{question}``),
``max_new_tokens`` (this benchmark's answer budget), ``limit`` (the first N problems), ``samples``
(answers per problem: pass@1 is their mean; unbiased pass@k up to it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any

from envs.qa_env import DEFAULT_TEMPLATE, check_template, load_items
from selfplay.core.config_schema import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INTS = ("max_new_tokens", "limit", "samples")


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: where its rows are and how to ask and score them."""

    name: str
    source: str
    question: str = "question"
    answer: str = "answer"
    split: str | None = None
    template: str = DEFAULT_TEMPLATE
    max_new_tokens: int | None = None
    limit: int | None = None
    samples: int | None = None

    def env_kwargs(self) -> dict[str, Any]:
        """``selfplay/QA-v0``'s keyword arguments for this benchmark."""
        return {"dataset": self.source, "question": self.question, "answer": self.answer,
                "split": self.split, "template": self.template, "max_new_tokens": self.max_new_tokens}


OPTIONS = tuple(f.name for f in fields(BenchSpec) if f.name not in ("name", "source"))


def split_arg(text: str) -> tuple[str, str]:
    """``"math500=data/m.jsonl,limit=50"`` -> ("math500", "data/m.jsonl,limit=50")."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"{text!r}: expected NAME=SOURCE, e.g. arith=envs/benchmarks/arith.jsonl")
    return name.strip(), value.strip()


def _options_from_text(value: str) -> dict[str, Any]:
    source, *rest = value.split(",")
    options: dict[str, Any] = {"source": source.strip()}
    for part in rest:
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"option {part!r}: expected key=value (one of {', '.join(OPTIONS)})")
        options[key.strip()] = raw.strip()
    return options


def parse_bench(name: str, value: Any) -> BenchSpec:
    """The spec of ``name``'s entry (a SOURCE string with options, or a mapping); ValueError, one
    line, naming the bad part."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"name {name!r}: expected letters, digits, '_', '.' or '-' (it names metrics)")
    if isinstance(value, str):
        options = _options_from_text(value)
    elif isinstance(value, dict):
        options = dict(value)
    else:
        raise ValueError(f"{value!r}: expected SOURCE (a path or dataset id) or a mapping with 'source'")
    source = options.pop("source", None)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source={source!r}: expected a JSONL file, a datasets folder or a dataset id")
    for key, raw in options.items():
        if key not in OPTIONS:
            raise ValueError(f"option {key!r}: unknown (expected one of {', '.join(OPTIONS)})")
        if key in _INTS:
            try:
                number = int(raw) if isinstance(raw, str) else raw
            except ValueError:
                number = None
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{key}={raw!r}: expected an integer >= 1")
            options[key] = number
        elif not isinstance(raw, str) or not raw:
            raise ValueError(f"{key}={raw!r}: expected a non-empty string")
    if "template" in options:
        check_template(options["template"])
    return BenchSpec(name=name, source=source.strip(), **options)


def parse_benches(entries: dict[str, Any]) -> list[BenchSpec]:
    """Every entry of ``eval.bench`` (or of the ``--bench`` flags), in order."""
    return [parse_bench(name, value) for name, value in entries.items()]


def problem_counts(specs: list[BenchSpec], key: str = "--bench") -> dict[str, int]:
    """Problems to ask per benchmark (its rows, or its ``limit``): reads every source now, so a
    missing file or a wrong column fails in seconds, naming the benchmark."""
    counts = {}
    for spec in specs:
        try:
            rows = len(load_items(spec.source, spec.question, spec.answer, spec.split))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{key} {spec.name}: {err}".replace("\n", " ")) from None
        counts[spec.name] = min(rows, spec.limit or rows)
    return counts


#: One call of the pool: (worker index, method, arguments).
Call = tuple[int, str, tuple]


def split_problems(count: int, workers: int) -> list[list[int]]:
    """Problem indices per worker: ``i`` goes to worker ``i mod workers`` (empty lists kept)."""
    if workers < 1:
        raise ValueError(f"workers={workers!r}: expected >= 1")
    return [list(range(w, count, workers)) for w in range(workers)]


def bench_calls(specs: list[BenchSpec], counts: dict[str, int], samples: dict[str, int], seed: int,
                workers: int) -> tuple[list[Call], list[str]]:
    """The ``evaluate_bench`` calls answering every benchmark on ``workers`` workers, and the
    benchmark each call answers. A source that is a path here is made absolute: the workers may
    run in another folder or on another node."""
    calls: list[Call] = []
    owners: list[str] = []
    for spec in specs:
        kwargs = spec.env_kwargs()
        if os.path.exists(spec.source):
            kwargs["dataset"] = os.path.abspath(spec.source)
        for w, indices in enumerate(split_problems(counts[spec.name], workers)):
            if indices:
                calls.append((w, "evaluate_bench", (spec.name, kwargs, indices, samples[spec.name], seed)))
                owners.append(spec.name)
    return calls, owners


def merge(owners: list[str], parts: list[list[dict[str, Any]]], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each benchmark's records from all its calls, in problem order."""
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name, part in zip(owners, parts):
        records[name] += part
    return {name: sorted(r, key=lambda x: x["index"]) for name, r in records.items()}


__all__ = ["BenchSpec", "OPTIONS", "split_arg", "parse_bench", "parse_benches", "problem_counts",
           "split_problems", "bench_calls", "merge"]
