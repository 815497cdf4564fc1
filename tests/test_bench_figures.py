"""Benchmark figures and specs (pure): intervals against hand-worked values, the unbiased pass@k
against brute-force enumeration, the paired difference, the template, NAME=SOURCE parsing."""

from __future__ import annotations

import itertools

import pytest

from actors.bench_run import bench_sampling, eta_line, plan_bench
from actors.engine import SamplingSettings
from envs.qa_env import DEFAULT_TEMPLATE, render_prompt
from selfplay.core.bench_spec import parse_bench, split_arg
from selfplay.stats.bench_figures import bench_metrics, format_table, paired_difference, summarize
from selfplay.stats.episode_stats import pass_at_k


def answers(shares: list[list[int]]) -> list[dict]:
    """Records: problem i answered once per entry of ``shares[i]`` (1 right, 0 wrong)."""
    return [{"index": i, "correct": c, "answered": 1, "tokens": 10 + c} for i, row in enumerate(shares)
            for c in row]


def test_pass_at_1_is_the_mean_over_problems_with_a_normal_interval_over_their_shares():
    # Shares 1, 0, 1/2, 1/2: mean 1/2; sample variance (1/4 + 1/4) / 3 = 1/6; standard error
    # sqrt(1/6 / 4) = 0.2041241; half-width 1.959964 * 0.2041241 = 0.4000759.
    s = summarize(answers([[1, 1], [0, 0], [1, 0], [0, 1]]))
    assert s["problems"] == 4 and s["samples"] == 2 and s["pass@1"] == 0.5
    assert s["pass@1_ci"] == pytest.approx([0.0999241, 0.9000759], abs=1e-6)
    assert s["pass@k"]["2"] == pytest.approx(0.75)  # a problem passes at 2 if either sample did
    assert s["answered"] == 1 and s["tokens"] == pytest.approx(10.5)


def test_the_interval_is_clipped_to_zero_one_and_unequal_samples_are_refused():
    assert summarize(answers([[1], [1], [1]]))["pass@1_ci"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="different numbers of answers"):
        summarize(answers([[1, 0], [1]]))


def test_paired_difference_against_hand_worked_values():
    # Per-problem differences 0, 1, 0, 1/2: mean 0.375; sample variance 0.6875 / 3; standard
    # error sqrt(0.6875 / 3 / 4) = 0.2393568; half-width 0.4691307.
    a, b = answers([[1, 1], [0, 0], [1, 0], [0, 1]]), answers([[1, 1], [1, 1], [1, 0], [1, 1]])
    d = paired_difference(a, b)
    assert d["problems"] == 4 and d["diff"] == pytest.approx(0.375)
    assert d["ci"] == pytest.approx([0.375 - 0.4691307, 0.375 + 0.4691307], abs=1e-6)
    # Paired only over problems both answered.
    assert paired_difference(a[:4], b)["problems"] == paired_difference(a, b[:4])["problems"] == 2


@pytest.mark.parametrize("n", range(1, 8))
def test_unbiased_pass_at_k_equals_brute_force_enumeration(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_spiral_template_is_the_default_and_any_template_with_question_works():
    q = "What is {x} in \\{1, 2\\}?"  # braces in questions and templates stay as they are
    # SPIRAL's math-evaluation-harness, prompt type qwen3-self-play (its eval.sh's), inside the user turn.
    assert render_prompt(DEFAULT_TEMPLATE, q) == (
        "Please reason step by step, and put your final answer within \\boxed{}.\nQuestion: " + q)
    assert render_prompt("Q: {question}\nA:", "2+2?") == "Q: 2+2?\nA:"
    with pytest.raises(ValueError, match="template="):
        render_prompt("no placeholder", q)


def test_bench_entries_parse_from_text_and_mappings_and_bad_ones_name_the_problem():
    spec = parse_bench(*split_arg("m500=data/m.jsonl,question=problem,limit=50,max_new_tokens=4096"))
    assert (spec.name, spec.source, spec.question, spec.answer, spec.limit, spec.max_new_tokens) == \
        ("m500", "data/m.jsonl", "problem", "answer", 50, 4096)
    assert parse_bench("aime", {"source": "x", "samples": 8}).samples == 8
    for text, message in (("arith", "expected NAME=SOURCE"), ("=x.jsonl", "expected NAME=SOURCE"),
                          ("a=x.jsonl,limit=zero", "limit='zero'"), ("a=x.jsonl,colour=red", "option 'colour'"),
                          ("a b=x.jsonl", "name 'a b'"), ("a=x.jsonl,template=Q", "template='Q'"),
                          ("a=x.jsonl,split", "option 'split'")):
        with pytest.raises(ValueError, match=message) as err:
            parse_bench(*split_arg(text))
        assert "\n" not in str(err.value)


def test_plan_metrics_sampling_and_progress_line():
    specs = plan_bench("a", {"dataset": "x", "max_new_tokens": 99}, [3, 5], 2, SamplingSettings())
    assert [s.options["index"] for s in specs] == [3, 3, 5, 5]
    assert {s.sampling.max_new_tokens for s in specs} == {99} and specs[0].group_id == "bench-a-q3"
    assert len({s.seed for s in specs}) == 4
    greedy = SamplingSettings(temperature=0.0)
    assert bench_sampling(greedy, 1) is greedy and bench_sampling(greedy, 4).temperature == 0.6
    s = summarize(answers([[1], [0]]))
    assert set(bench_metrics("a", s)) >= {"eval/bench/a/pass_at_1", "eval/bench/a/answered", "eval/bench/a/tokens"}
    assert eta_line("a", 10, 40, 500, 5.0) == "bench a: 10/40 answers, 100 tokens/s, ETA 0m15s"
    table = format_table({"x": {"a": s}, "y": {"a": s}}, {"a": paired_difference(answers([[1], [0]]), answers([[1], [1]]))})
    assert "paired difference" in table and "+0.500" in table


def test_progress_line_shows_each_benchmark_with_its_interval():
    from selfplay.stats.progress import progress_line

    s = summarize(answers([[1, 1], [0, 0], [1, 0], [0, 1]]))
    line = progress_line(2, 4, {}, {**bench_metrics("math500", s), **bench_metrics("arith", s)}, 5.0)
    assert "| bench arith 0.500 [0.10, 0.90] | bench math500 0.500 [0.10, 0.90] |" in line
