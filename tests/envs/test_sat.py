"""SAT instances and datasets (envs.sat, envs.sat_data): planted generation checked by a real
solver, the verifier against brute force, SATURN's difficulty, notation and JSONL round trips."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pycosat
import pytest

from envs.sat import (SatInstance, check_level, difficulty, extract_bits, format_formula, generate,
                      grade, max_clauses, parse_formula, satisfies, unsatisfied, variable_name)
from envs.sat_data import dumps, loads, make_dataset, read_jsonl, row_to_instance, write_jsonl

SATURN_TRAIN = [(3, 5, 5), (3, 5, 6)]
SATURN_EVAL = [(3, 5, 20), (3, 5, 25), (3, 6, 20), (3, 7, 20), (3, 7, 40), (4, 7, 20), (4, 7, 40),
               (4, 8, 40), (5, 8, 40), (6, 7, 40)]
# Dense levels (every admissible clause, or nearly), tiny ones and k > 26.
EDGE = [(1, 1, 1), (1, 3, 3), (2, 3, 9), (3, 5, 70), (3, 5, 36), (2, 2, 3), (5, 5, 31),
        (3, 27, 10), (3, 30, 120), (4, 52, 200), (2, 100, 50)]
SATURN_ROWS = [
    '{"id": 0, "n_sat": 3, "k": 5, "solution": "11000", "clause": "!A!B!C & !A!C!E & ABE"}',
    '{"id": 1, "n_sat": 3, "k": 6, "solution": "010101", "clause": "BDF & !A!C!E & A!BF & !B!DF"}',
    '{"id": "x-7", "n_sat": 2, "k": 3, "solution": "001", "clause": "!AC & !B!A & C!C"}',
]


def brute_force_models(clauses, k):
    """Every satisfying bit string, evaluated independently of envs.sat."""
    models = set()
    for bits in itertools.product("01", repeat=k):
        if all(any((bits[abs(x) - 1] == "1") == (x > 0) for x in c) for c in clauses):
            models.add("".join(bits))
    return models


# ----- generation ------------------------------------------------------------------------------
@pytest.mark.parametrize("level", SATURN_TRAIN + SATURN_EVAL + EDGE)
def test_generated_instances_are_planted_well_formed_and_satisfiable(level):
    n, k, l = level
    for seed in range(15):
        inst = generate(n, k, l, rng=seed)
        assert inst.level == level and inst.num_vars == k and len(inst.clauses) == l
        assert satisfies(inst.clauses, inst.solution)
        assert pycosat.solve([list(c) for c in inst.clauses], vars=k) != "UNSAT"
        for clause in inst.clauses:
            variables = [abs(x) for x in clause]
            assert len(clause) == n and len(set(variables)) == n and variables == sorted(variables)
            assert all(1 <= v <= k for v in variables)
        assert len({frozenset(c) for c in inst.clauses}) == l


def test_same_seed_same_instance_and_seeds_differ():
    for level in [(3, 5, 5), (3, 7, 40), (3, 40, 30)]:
        a = generate(*level, rng=11)
        assert a == generate(*level, rng=np.random.default_rng(11))
        assert a != generate(*level, rng=12)


def test_planted_assignment_is_spread_over_both_values():
    # The planted assignment is uniform: over many instances every variable is true about half
    # of the time (a generator planting all-true would pass the satisfiability checks).
    plants = np.array([[int(b) for b in generate(3, 7, 20, rng=s).solution] for s in range(400)])
    assert np.all(np.abs(plants.mean(axis=0) - 0.5) < 0.1)


@pytest.mark.parametrize("args, match", [
    ((0, 5, 5), r"n=0: literals per clause must be at least 1"),
    ((4, 3, 5), r"n=4 > k=3: .*n must be <= k"),
    ((3, 5, 0), r"l=0: the number of clauses must be at least 1"),
    ((3, 5, 71), r"l=71 > 70: only C\(k, n\) \* \(2\^n - 1\) = 70"),
    ((1, 1, 2), r"l=2 > 1"),
    ((3.0, 5, 5), r"n=3.0: expected an integer"),
    ((3, True, 5), r"k=True: expected an integer"),
])
def test_impossible_levels_raise_a_clear_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        check_level(*args)
    with pytest.raises(ValueError, match=match):
        generate(*args, rng=0)


def test_max_clauses_counts_the_clauses_a_planted_assignment_admits():
    for n, k in [(1, 1), (1, 4), (2, 3), (3, 5), (2, 4)]:
        # Under the all-true assignment a clause is satisfied iff some literal is positive.
        count = sum(1 for _ in itertools.combinations(range(k), n)
                    for signs in itertools.product((True, False), repeat=n) if any(signs))
        assert max_clauses(n, k) == count
        assert len(set(generate(n, k, count, rng=0).clauses)) == count


def test_difficulty_matches_saturn():
    assert round(difficulty(3, 5, 5), 2) == 5.63
    assert round(difficulty(3, 5, 13), 2) == 8.39
    assert round(difficulty(3, 7, 40), 2) == 12.78


# ----- verification ----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [(3, 5, 5), (3, 5, 20), (3, 7, 40), (2, 4, 12), (4, 8, 40), (3, 10, 30)])
def test_the_verifier_agrees_with_brute_force_and_the_solver(level):
    for seed in range(3):
        inst = generate(*level, rng=seed)
        k = inst.num_vars
        models = brute_force_models(inst.clauses, k)
        solver = {"".join("1" if x > 0 else "0" for x in m)
                  for m in pycosat.itersolve([list(c) for c in inst.clauses], vars=k)}
        assert models == solver and inst.solution in models
        for bits in itertools.product("01", repeat=k):
            bits = "".join(bits)
            assert satisfies(inst.clauses, bits) == (bits in models)
            assert grade(f"\\boxed{{{bits}}}", inst.clauses, k)[0] == (
                "satisfied" if bits in models else "unsatisfied")


def test_unsatisfied_names_the_false_clauses():
    clauses = [(1, 2), (-1, 2), (1, -2)]
    assert unsatisfied(clauses, "00") == [0] and unsatisfied(clauses, "10") == [1]
    assert unsatisfied(clauses, [True, True]) == []


@pytest.mark.parametrize("text, bits", [
    ("\\boxed{10110}", "10110"),
    ("first \\boxed{00000}, final \\boxed{ 1 0 1 1 0 }", "10110"),
    ("\\boxed{\\text{10110}}", "10110"),
    ("\\boxed{\\boxed{10110}}", "10110"),
    ("\\boxed {11111}", "11111"),
    ("10110", None),                      # no box
    ("\\boxed{1011}", None),              # too short (SATURN would pad it; here it is malformed)
    ("\\boxed{101100}", None),            # too long
    ("\\boxed{1012 0}", None),
    ("\\boxed{TFTTF}", None),
    ("\\boxed{}", None),
    ("\\boxed{10110} then \\boxed{no}", None),  # the last box counts
    ("\\boxed{１０１１０}", None),          # full-width digits are not 0/1
])
def test_answers_are_read_from_the_last_box(text, bits):
    assert extract_bits(text, 5) == bits


def test_lenient_reads_one_bare_bit_string():
    assert extract_bits("I think A B C D E = 10110.", 5, lenient=True) == "10110"
    assert extract_bits("10110 or 10111", 5, lenient=True) is None   # hedging commits to nothing
    assert extract_bits("10110 or 10110", 5, lenient=True) == "10110"
    assert extract_bits("101101", 5, lenient=True) is None
    assert extract_bits("\\boxed{bad} 10110", 5, lenient=True) is None  # a box wins, even a bad one


# ----- notation --------------------------------------------------------------------------------
def test_variables_are_letters_up_to_26_then_x_names():
    assert [variable_name(i, 5) for i in (1, 2, 5)] == ["A", "B", "E"]
    assert variable_name(26, 26) == "Z"
    assert [variable_name(i, 27) for i in (1, 27)] == ["x1", "x27"]
    assert format_formula([(-1, -2, -3), (-1, -3, -5), (1, 2, 5)], 5) == "!A!B!C & !A!C!E & ABE"
    assert format_formula([(1, -2, 30)], 30) == "x1!x2x30"


@pytest.mark.parametrize("level", [(3, 5, 20), (6, 7, 40), (3, 26, 30), (3, 27, 30), (5, 120, 40)])
def test_formula_notation_round_trips(level):
    inst = generate(*level, rng=3)
    assert parse_formula(format_formula(inst.clauses, inst.num_vars), inst.num_vars) == inst.clauses


@pytest.mark.parametrize("text, k, match", [
    ("", 5, "expected clauses such as"), ("A & ", 5, "expected literals such as"),
    ("AB | C", 5, "expected literals such as"), ("a!B", 5, "expected literals such as"),
    ("!!A", 5, "expected literals such as"), ("ABF", 5, "variable F is beyond k=5"),
    ("x0", 30, "expected literals such as"), ("A B", 5, "expected literals such as"),
    ("x1!x2", 5, "variables are named A..Z"), ("A!B", 30, "variables are named x1..xk"),
    ("x1x31", 30, "variable x31 is beyond k=30")])
def test_bad_formulas_are_rejected(text, k, match):
    with pytest.raises(ValueError, match=match):
        parse_formula(text, k)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_vars": 0, "clauses": [[1]]}, "num_vars=0"),
    ({"num_vars": 3, "clauses": []}, "at least one clause"),
    ({"num_vars": 3, "clauses": [[1, 0]]}, "literal 0"),
    ({"num_vars": 3, "clauses": [[1, -4]]}, "literal -4"),
    ({"num_vars": 3, "clauses": [[]]}, "non-empty"),
    ({"num_vars": 3, "clauses": "1 2 3"}, "list of lists"),
    ({"num_vars": 2, "clauses": [[1, 2]], "solution": "1"}, "expected 2 characters"),
    ({"num_vars": 2, "clauses": [[1, 2]], "solution": "00"}, "does not satisfy"),
])
def test_bad_instances_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SatInstance(**kwargs)


# ----- JSONL -----------------------------------------------------------------------------------
@pytest.mark.parametrize("line", SATURN_ROWS)
def test_saturn_rows_round_trip_exactly(line):
    inst = loads(line)
    assert inst.solution == json.loads(line)["solution"] and satisfies(inst.clauses, inst.solution)
    assert dumps(inst, "saturn") == line
    assert loads(dumps(inst)) == inst  # through the project's format and back


def test_the_saturn_example_row_reads_as_dimacs():
    inst = loads(SATURN_ROWS[0])
    assert inst.clauses == ((-1, -2, -3), (-1, -3, -5), (1, 2, 5))
    assert inst.level == (3, 5, 3) and inst.id == 0


def test_unknown_keys_survive_a_round_trip():
    line = '{"id": 4, "n_sat": 1, "k": 2, "solution": "10", "clause": "A & !B", "split": "test"}'
    assert dumps(loads(line), "saturn") == line
    assert json.loads(dumps(loads(line)))["split"] == "test"


def test_the_projects_jsonl_round_trips(tmp_path):
    levels = SATURN_TRAIN + [(3, 30, 20), (4, 8, 40)]
    instances = make_dataset(levels, per_level=5, seed=1)
    assert [i.id for i in instances] == list(range(20)) and instances[-1].level == (4, 8, 40)
    path = tmp_path / "own.jsonl"
    assert write_jsonl(path, instances) == 20
    assert read_jsonl(path) == instances
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["id", "n", "k", "clauses", "solution"]
    again = tmp_path / "again.jsonl"
    write_jsonl(again, read_jsonl(path))
    assert again.read_text() == path.read_text()
    # ... and through SATURN's format (x-names beyond 26 variables) back to the same instances.
    saturn = tmp_path / "saturn.jsonl"
    write_jsonl(saturn, instances, fmt="saturn")
    assert read_jsonl(saturn) == instances


def test_an_instance_without_solution_is_written_without_one():
    inst = SatInstance(2, ((1, 2), (-1, 2)))
    assert dumps(inst) == '{"n": 2, "k": 2, "clauses": [[1, 2], [-1, 2]]}'
    assert loads(dumps(inst)) == inst and loads(dumps(inst, "saturn")) == inst


@pytest.mark.parametrize("row, match", [
    ([1, 2], "expected a JSON object"),
    ({"n": 3, "clauses": [[1]]}, "missing 'k'"),
    ({"k": 3}, "expected 'clauses'"),
    ({"k": 3, "n": 2, "clauses": [[1, 2, 3]]}, "n=2 but the longest clause has 3"),
    ({"k": 3, "n_sat": 3, "clause": "AB"}, "n_sat=3"),
    ({"k": 2, "clause": "ABC"}, "beyond k=2"),
    ({"k": 2, "clauses": [[1, 2]], "solution": "00"}, "does not satisfy"),
])
def test_bad_rows_are_rejected(row, match):
    with pytest.raises(ValueError, match=match):
        row_to_instance(row)


def test_a_bad_line_is_named_by_file_and_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(SATURN_ROWS[0] + "\n\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 3: not JSON"):
        read_jsonl(path)
    with pytest.raises(ValueError, match="fmt='dimacs'"):
        dumps(loads(SATURN_ROWS[0]), "dimacs")


def test_rows_of_saturns_published_files_read_verify_and_round_trip_byte_for_byte():
    # Three rows copied verbatim from SATURN's released data (data/test/n6_k7_length40_sample100
    # and data/train/Train_prompt_3_5_5_270/train.jsonl), with their "prompt" field.
    from pathlib import Path

    from envs.sat_data import dumps, read_jsonl

    path = Path(__file__).parent / "data" / "saturn_published_rows.jsonl"
    rows = read_jsonl(path)
    assert [r.level for r in rows] == [(6, 7, 40), (6, 7, 40), (3, 5, 5)]
    assert all(satisfies(r.clauses, r.solution) for r in rows)
    assert [dumps(r, "saturn") for r in rows] == path.read_text().splitlines()
