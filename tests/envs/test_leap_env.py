"""selfplay/LeaP-v0 driven by scripted actions: phases, the pool, routing, budgets and rewards."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.leap import (COMMENT_OPEN, LEAP_PREFIX_MATH, LEAP_SUFFIX_MATH, NO_COMMENTS, RECAPS, SUMMARY_STOP,
                       SUMMARY_TRIGGERS)
from envs.leap_env import ANSWER_PROMPT, THINK_STOP, LeaPEnv
from envs.leap_problems import ANSWER_INSTRUCTION, ProblemSource

LEAP = "selfplay/LeaP-v0"


def make(**kwargs) -> LeaPEnv:
    return gym.make(LEAP, **kwargs).unwrapped


def play(env: LeaPEnv, reply, seed: int = 0, options=None) -> tuple[list[dict], dict]:
    """Play to the end with ``reply(info) -> action``; returns every turn's info and the last."""
    _, info = env.reset(seed=seed, options=options)
    turns = []
    while True:
        turns.append(info)
        _, _, terminated, _, info = env.step(reply(info))
        if terminated:
            return turns, info


def test_registered_defaults_pass_check_env_and_are_small() -> None:
    env = make()
    check_env(env)
    assert (env.num_paths, env.segment_tokens, env.num_segments) == (4, 64, 2)
    assert env.token_budget == 4 * (2 * 64 + 32 + 16)


def test_phases_follow_leap_and_every_path_is_an_int_player() -> None:
    env = make(num_paths=3, num_segments=3)
    turns, last = play(env, lambda info: "Some thought.")
    phases = [(t["phase"], t["player"]) for t in turns]
    reasoning = [("reasoning", p) for p in range(3)]
    summaries = [("summarising", p) for p in range(3)]
    answers = [("answering", p) for p in range(3)]
    assert phases == reasoning + summaries + reasoning + summaries + reasoning + answers
    assert all(isinstance(t["player"], int) for t in turns)
    assert [t["pending"] for t in turns[:3]] == [[0, 1, 2], [1, 2], [2]]
    assert last["player"] == -1 and set(last["rewards"]) == {0, 1, 2}
    assert turns[3]["stop"] == [SUMMARY_STOP] and turns[-1]["insert"].endswith(ANSWER_PROMPT)


def test_routed_comments_are_inserted_before_the_next_segment() -> None:
    env = make(num_paths=3, peers=1, router="clustered", num_segments=2)
    summaries = {0: "x is 5 because 2 + 3", 1: "x is 5 because 3 + 2", 2: "completely different idea"}

    def reply(info):
        if info["phase"] == "summarising":
            return summaries[info["player"]] + SUMMARY_STOP
        return "thinking"

    turns, _ = play(env, reply)
    second = {t["player"]: t["insert"] for t in turns if t["phase"] == "reasoning" and t["segment"] == 1}
    assert f'Peer 1: "{summaries[1]}"' in second[0]  # clustered: the most similar peer
    assert f'Peer 1: "{summaries[0]}"' in second[1]
    assert second[2].count("Peer ") == 1 and COMMENT_OPEN in second[2]


def test_a_path_that_finishes_leaves_the_pool() -> None:
    env = make(num_paths=3, num_segments=3)

    def reply(info):
        if info["phase"] == "summarising":
            return f"path {info['player']} summary{SUMMARY_STOP}"
        if info["player"] == 1 and info["phase"] == "reasoning":
            return {"text": "The answer is \\boxed{4}.", "finished": True, "tokens": 7}
        return "still thinking"

    turns, last = play(env, reply)
    acted = [(t["phase"], t["player"]) for t in turns]
    assert acted.count(("reasoning", 1)) == 1
    assert ("summarising", 1) not in acted and ("answering", 1) not in acted
    for t in turns:  # nobody hears the finished path's words
        assert "path 1 summary" not in t["insert"]
    assert last["answers"][1] == "4"


def test_a_lone_path_gets_no_comments() -> None:
    env = make(num_paths=1)
    turns, _ = play(env, lambda info: "hmm")
    second = [t for t in turns if t["phase"] == "reasoning" and t["segment"] == 1]
    assert NO_COMMENTS in second[0]["insert"]


def test_summary_cut_short_is_closed_by_hand_and_partial_paragraph_trimmed() -> None:
    env = make(num_paths=2)
    turns, _ = play(env, lambda info: "First paragraph.\n\nA partial sec" if info["phase"] == "reasoning"
                    else "half a summary </summ")
    summarising = [t for t in turns if t["phase"] == "summarising"]
    assert summarising[0]["trim_chars"] == len("\n\nA partial sec")
    after = [t for t in turns if t["phase"] == "reasoning" and t["segment"] == 1]
    assert after[0]["insert"].startswith("arize>")  # "</summ" completed to "</summarize>"
    assert 'Peer 1: "half a summary"' in after[0]["insert"]


@pytest.mark.parametrize("share", [True, False])
def test_token_budget_is_never_exceeded(share: bool) -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        env = make(num_paths=int(rng.integers(1, 6)), segment_tokens=int(rng.integers(1, 40)),
                   num_segments=int(rng.integers(1, 4)), summary_tokens=int(rng.integers(1, 10)),
                   answer_tokens=int(rng.integers(1, 8)), share=share,
                   token_budget=int(rng.integers(60, 400)))
        spent = [0] * env.num_paths

        def reply(info):
            assert 0 <= info["max_tokens"] <= env.remaining(info["player"])
            tokens = int(rng.integers(0, info["max_tokens"] + 1))
            spent[info["player"]] += tokens
            return {"text": "x", "tokens": tokens, "finished": bool(rng.random() < 0.1)}

        play(env, reply, seed=seed)
        assert sum(spent) <= env.token_budget
        assert max(spent) <= env.path_budget


def test_reporting_more_tokens_than_allowed_is_refused() -> None:
    env = make()
    _, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="max_tokens"):
        env.step({"text": "x", "tokens": info["max_tokens"] + 1})


def test_independent_mode_spends_the_same_budget_in_one_segment() -> None:
    leap, alone = make(), make(share=False)
    turns, _ = play(alone, lambda info: "thinking")
    assert [t["phase"] for t in turns] == ["reasoning"] * 4 + ["answering"] * 4
    assert turns[0]["max_tokens"] == alone.path_budget - alone.answer_tokens
    assert alone.token_budget == leap.token_budget


def test_rewards_read_only_what_the_path_wrote() -> None:
    env = make(num_paths=3, correct_reward=1.0, wrong_reward=-0.5, no_answer_reward=-1.0)
    question, _ = env.reset(seed=3)
    right = env.problem.reference

    def reply(info):
        p, phase = info["player"], info["phase"]
        if phase == "summarising":
            return f"it is \\boxed{{{right}}}{SUMMARY_STOP}" if p == 0 else f"unsure{SUMMARY_STOP}"
        if phase == "answering":
            return {0: f"{right}}}", 1: f"{int(right) + 1}}}", 2: "no idea"}[p]
        return "working"

    _, last = play(env, reply, seed=3)
    # Path 2 read path 0's boxed answer in a comment but never wrote one itself.
    assert last["rewards"] == {0: 1.0, 1: -0.5, 2: -1.0}
    assert last["stats"]["pass_at_1"] == pytest.approx(1 / 3)


def test_majority_vote_and_answer_changes() -> None:
    env = make(num_paths=3)
    env.reset(seed=5)
    right, wrong = env.problem.reference, str(int(env.problem.reference) + 1)

    def reply(info):
        p, phase = info["player"], info["phase"]
        if phase == "reasoning" and info["segment"] == 0:
            return f"first guess \\boxed{{{wrong if p < 2 else right}}}"
        if phase == "summarising":
            return f"my guess{SUMMARY_STOP}"
        if phase == "answering":
            return f"{right}}}" if p < 2 else f"{wrong}}}"
        return "reconsidering"

    _, last = play(env, reply, seed=5)
    stats = last["stats"]
    assert stats["cons_at_n"] == 1.0  # two of three answer right
    assert (stats["answer_changes"], stats["changes_better"], stats["changes_worse"]) == (3, 2, 1)
    assert stats["seg0/accuracy"] == pytest.approx(1 / 3)


def test_sat_and_jsonl_sources(tmp_path) -> None:
    env = make(source="sat", level=[3, 4, 4], num_paths=2, num_segments=1)
    _, info = env.reset(seed=1)
    bits = env.problem.reference
    _, last = play(env, lambda info: {"text": f"\\boxed{{{bits}}}", "finished": True, "tokens": 5}, seed=1)
    assert last["rewards"] == {0: 1.0, 1: 1.0}
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "What is half of one?", "answer": "\\frac{1}{2}"}) + "\n")
    env = make(source="jsonl", dataset=str(data), num_paths=2, num_segments=1)
    _, last = play(env, lambda info: {"text": "\\boxed{0.5}" if info["player"] == 0 else "\\boxed{2}",
                                      "finished": True, "tokens": 3})
    assert last["rewards"] == {0: 1.0, 1: 0.0}
    assert env.problem.question.startswith("What is half of one?")


def test_jsonl_source_reads_a_datasets_folder_with_its_column_names(tmp_path) -> None:
    """LeaP reads what ``--bench`` reads (one reader, ``qa_data.read_source``): a ``datasets``
    folder whose columns are MATH-500's ``problem``/``answer``, ``question=`` naming the one."""
    datasets = pytest.importorskip("datasets")
    rows = [{"problem": "What is half of one?", "answer": "\\frac{1}{2}", "level": 1}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "math"))
    env = make(source="jsonl", dataset=str(tmp_path / "math"), question="problem", num_paths=2,
               num_segments=1)
    _, last = play(env, lambda info: {"text": "\\boxed{0.5}" if info["player"] == 0 else "\\boxed{2}",
                                      "finished": True, "tokens": 3})
    assert last["rewards"] == {0: 1.0, 1: 0.0}
    assert env.problem.question.startswith("What is half of one?")
    with pytest.raises(ValueError, match="no column 'question'"):
        make(source="jsonl", dataset=str(tmp_path / "math"))
    with pytest.raises(ValueError, match="source='jsonl' only"):
        make(source="arithmetic", question="problem")


@pytest.mark.parametrize("kwargs, match", [
    ({"num_paths": 0}, "num_paths"), ({"router": "nearest"}, "router"), ({"peers": -1}, "peers"),
    ({"source": "gsm8k"}, "source"), ({"source": "jsonl"}, "dataset"), ({"level": 9}, "level"),
    ({"token_budget": 3}, "token_budget"), ({"segment_tokens": 2.5}, "segment_tokens"),
    ({"prompt": "r1"}, "prompt"),
])
def test_bad_kwargs_name_the_field(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_missing_dataset_and_bad_options() -> None:
    with pytest.raises(FileNotFoundError):
        ProblemSource("jsonl", dataset="/nonexistent/aime.jsonl")
    with pytest.raises(ValueError, match="unknown reset option"):
        make().reset(seed=0, options={"difficulty": 3})


# ----- a path that closes its thinking answers after it (issue 20, item 1) ----------------------
@pytest.mark.parametrize("share", [True, False])
def test_a_path_that_closes_its_thinking_writes_its_answer_after_it(share: bool) -> None:
    """R1-style models write the boxed answer after ``</think>``: a path that stops there has not
    answered yet. It leaves the pool (no summary, no peers), counts as finished, and in the
    answering phase goes on after its ``</think>`` with nothing inserted, for all it has left."""
    env = make(num_paths=3, num_segments=2, share=share)
    env.reset(seed=4)
    right, wrong = env.problem.reference, str(int(env.problem.reference) + 1)

    def reply(info):
        p, phase = info["player"], info["phase"]
        if phase == "reasoning" and p == 1:
            return {"text": f"So the sum is {right}.\n{THINK_STOP}", "finished": True, "tokens": 9}
        if phase == "summarising":
            return f"path {p} summary{SUMMARY_STOP}"
        if phase == "answering" and p == 1:
            return {"text": f"\n\nThe sum is \\boxed{{{right}}}.", "finished": True, "tokens": 8}
        if phase == "answering":
            return f"{wrong}}}"
        return "still thinking"

    turns, last = play(env, reply, seed=4)
    own = [t for t in turns if t["player"] == 1]
    assert [t["phase"] for t in own] == ["reasoning", "answering"]
    answer = own[-1]
    assert answer["insert"] == "" and answer["stop"] == []  # its own words, no template
    assert answer["max_tokens"] == env.path_budget - 9  # everything it kept back and did not spend
    assert last["answers"][1] == right and last["rewards"][1] == 1.0
    assert last["rewards"][0] == last["rewards"][2] == 0.0  # made to answer, wrongly
    stats = last["stats"]
    assert stats["finished"] == pytest.approx(1 / 3) and stats["seg0/finished"] == pytest.approx(1 / 3)
    assert stats["pass_at_1"] == pytest.approx(1 / 3) and stats["answered"] == 1.0


def test_a_path_that_ends_its_response_or_answers_past_think_is_done() -> None:
    """End of sequence, or text already past ``</think>`` (a runner without stop strings), is the
    path's final text: no answering turn."""
    env = make(num_paths=2, num_segments=1)
    env.reset(seed=0)
    right = env.problem.reference
    texts = {0: {"text": "I give up.", "finished": True, "tokens": 3},
             1: f"thinking {THINK_STOP} The answer is \\boxed{{{right}}}."}
    turns, last = play(env, lambda info: texts[info["player"]] if info["phase"] == "reasoning" else "?")
    assert [t["phase"] for t in turns] == ["reasoning", "reasoning"]
    assert last["rewards"] == {0: 0.0, 1: 1.0} and last["stats"]["finished"] == 1.0


# ----- LeaP's prompts for R1-style models (issue 20, item 2) ------------------------------------
def test_leap_prompt_wraps_the_problem_in_leaps_instructions() -> None:
    """``prompt: leap``: LeaP's ``leap_prefix_MATH`` follows the problem in the user message and its
    ``leap_subfix_MATH`` opens every path's answer, once, before the first segment."""
    cot, leap = make(num_paths=2), make(num_paths=2, prompt="leap")
    question, _ = cot.reset(seed=1)
    assert question.endswith(" " + ANSWER_INSTRUCTION)
    problem = question[:-len(ANSWER_INSTRUCTION)]
    turns, _ = play(leap, lambda info: "hmm", seed=1)
    assert leap.problem.question == problem + LEAP_PREFIX_MATH
    first = [t for t in turns if t["phase"] == "reasoning" and t["segment"] == 0]
    assert [t["insert"] for t in first] == [LEAP_SUFFIX_MATH] * 2
    assert all(LEAP_SUFFIX_MATH not in t["insert"] for t in turns if t not in first)
    assert [r.insert for r in leap.turn_requests(*leap.reset(seed=1))] == [LEAP_SUFFIX_MATH] * 2
    assert all(t["insert"] == "" for t in play(cot, lambda info: "hmm", seed=1)[0][:2])
    sat = make(source="sat", num_paths=1, prompt="leap")
    assert sat.reset(seed=0)[0].endswith(" " + LEAP_PREFIX_MATH)


def test_summaries_are_asked_for_with_leaps_recaps_drawn_at_random() -> None:
    """Every summary request is a blank line, one of LeaP's recap sentences and one of its summary
    openings (``get_leap``), drawn per path and per round from the episode's seed."""
    def inserts(seed: int) -> list[str]:
        env = make(num_paths=4, num_segments=3)
        turns, _ = play(env, lambda info: "x", seed=seed)
        return [t["insert"] for t in turns if t["phase"] == "summarising"]

    drawn = [i for seed in range(6) for i in inserts(seed)]
    pairs = {(r, t) for r in RECAPS for t in SUMMARY_TRIGGERS}
    assert all(i.startswith("\n\n") and any(i == "\n\n" + r + t for r, t in pairs) for i in drawn)
    assert len({i for i in drawn}) > 10  # 48 draws from 42 pairs: random, not one fixed phrase
    assert inserts(3) == inserts(3)
