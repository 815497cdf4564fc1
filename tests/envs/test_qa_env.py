"""``selfplay/QA-v0`` and its sources: JSONL files and ``datasets`` folders (built here, nothing
downloaded), column names, bad input in one line, and the shipped arithmetic benchmark."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import envs  # noqa: F401 - registers the ids
from envs.qa_data import read_source
from envs.benchmarks import ARITH, arith_items
from envs.qa_data import item_to_row

ROWS = [{"problem": "What is 1/2 + 1/4?", "solution": "\\frac{3}{4}"}, {"problem": "2+3?", "solution": 5}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def folder(tmp_path):
    import datasets

    path = tmp_path / "ds"
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{**r, "solution": str(r["solution"])} for r in ROWS])}
                         ).save_to_disk(str(path))
    return path


def test_jsonl_and_datasets_folder_give_the_same_rows_with_named_columns(tmp_path, folder):
    jsonl = read_source(write_jsonl(tmp_path / "m.jsonl", ROWS), "problem", "solution")
    saved = read_source(folder, "problem", "solution")
    assert [(i.question, i.answer) for i in jsonl] == [(i.question, i.answer) for i in saved] == \
        [("What is 1/2 + 1/4?", "\\frac{3}{4}"), ("2+3?", "5")]
    assert read_source(folder, "problem", "solution", split="test")[1].answer == "5"


def test_bad_sources_fail_in_one_line_naming_the_problem(tmp_path, folder):
    cases = [((tmp_path / "missing.jsonl",), "no such file"),
             ((write_jsonl(tmp_path / "m.jsonl", ROWS),), "line 1: no column 'question'"),
             ((folder, "question"), "row 0: no column 'question' \\(columns: problem, solution\\)"),
             ((folder, "problem", "solution", "train"), "split='train': expected one of \\['test'\\]"),
             ((tmp_path / "nowhere",), "not a JSONL file, a datasets folder or a cached dataset id")]
    for args, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            read_source(*args)
        assert "\n" not in str(err.value)


def test_episode_scores_the_reply_with_math_verify_and_reports_answered(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", ROWS)
    env = gym.make("selfplay/QA-v0", dataset=str(path), question="problem", answer="solution",
                   template="Q: {question}", max_new_tokens=77).unwrapped
    obs, info = env.reset(options={"index": 0})
    assert obs == "Q: What is 1/2 + 1/4?" and env.system_prompt is None
    assert env.turn_requests(obs, info)[0].max_tokens == 77
    *_, reward, done, _, info = env.step("so it is \\boxed{0.75}")
    assert reward == 1.0 and done and info["stats"] == {"correct": 1.0, "answered": 1.0}
    env.reset(options={"index": 1})
    *_, reward, _, _, info = env.step("I guess 6")
    assert reward == 0.0 and info["stats"] == {"correct": 0.0, "answered": 0.0} and not info["invalid"]
    with pytest.raises(ValueError, match="index=2"):
        env.reset(options={"index": 2})


def test_shipped_arithmetic_benchmark_is_the_default_and_regenerates_byte_for_byte(tmp_path):
    env = gym.make("selfplay/QA-v0").unwrapped
    assert len(env) == 150
    assert ARITH.read_text() == "".join(json.dumps(item_to_row(i)) + "\n" for i in arith_items())
    obs, _ = env.reset(options={"index": 0})
    assert obs.startswith("Please reason step by step") and "\nQuestion: What is " in obs
