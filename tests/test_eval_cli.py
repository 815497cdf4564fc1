"""`selfplay eval --player random` prints what the rules imply, for every game."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from selfplay.core import metric_names as names


def _eval(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "selfplay", "eval", *args, "--json"],
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_random_never_beats_the_perfect_tictactoe_player_and_rarely_the_others():
    out = _eval("--player", "random", "--envs", "all", "--games", "200", "eval.opponents=[random,strong]")
    rows = {(r["env"], r["opponent"], r["role"]): r for r in out["results"]}
    assert len(rows) == 5 * 2 * 2  # every game, both opponents, both seats
    for seat in (0, 1):
        assert rows[("TicTacToe-v0", "strong", seat)]["win"] == 0.0
        assert rows[("ConnectFour-v0", "strong", seat)]["win"] <= 0.1
        assert rows[("LiarsDice-v0", "strong", seat)]["win"] <= 0.2
        # Random against random: no seat is shut out, and no fixed player ever acts invalidly.
        assert 0.2 < rows[("TicTacToe-v0", "random", seat)]["win"] < 0.8
    assert all(r["invalid"] == 0.0 for r in out["results"])
    # Kuhn Poker's equilibrium is unexploitable: random loses chips to it from both seats.
    assert rows[("KuhnPoker-v0", "strong", 0)]["return"] < 0
    assert rows[("KuhnPoker-v0", "strong", 1)]["return"] < 0


def test_unknown_env_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "selfplay", "eval", "--player", "random",
                           "--envs", "Chess-v0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("config error: --envs='selfplay/Chess-v0': not a registered environment")


@pytest.mark.slow
def test_eval_of_a_model_prints_every_game_opponent_and_seat_and_exact_kuhn_figures(tiny_model):
    out = _eval("--model", "tiny", "--envs", "TicTacToe-v0,KuhnPoker-v0", "--games", "2",
                "eval.opponents=[random,strong]", "rollout.kv_cache_gib=1", "rollout.max_new_tokens=8")
    assert out["player"] == "tiny"
    assert sorted((r["env"], r["opponent"], r["role"]) for r in out["results"]) == sorted(
        (g, o, s) for g in ("TicTacToe-v0", "KuhnPoker-v0") for o in ("random", "strong") for s in (0, 1))
    assert all(r["games"] == 2 for r in out["results"])
    # The printed values against the equilibrium, recomputed here by a separate enumeration of
    # the deals and betting lines from the tiny model's action probabilities. (Exploitability is
    # left out: its best response is the learning issue's to fix and check by brute force.)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envs import kuhn_eval
    from selfplay.commands.evaluate import model_policy

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    policy = model_policy(model, AutoTokenizer.from_pretrained(tiny_model))
    eq = kuhn_eval.equilibrium_policy()
    assert _kuhn_value_p0(eq, eq) == pytest.approx(-1 / 18)  # the game's value: the enumeration is right
    assert out["kuhn_exact"][names.KUHN_EXACT_VALUE_P0] == pytest.approx(_kuhn_value_p0(policy, eq), abs=1e-5)
    assert out["kuhn_exact"][names.KUHN_EXACT_VALUE_P1] == pytest.approx(-_kuhn_value_p0(eq, policy), abs=1e-5)


@pytest.mark.slow
def test_sampled_and_exact_kuhn_figures_agree_with_constrained_answers(smollm2):
    """With constrained answers (``answer_choices``) the exact figures are the played policy: the
    sampled frequencies at each information set (64 replies from the running vLLM engine, bf16)
    match the exact probabilities (float32 transformers, the action's token after the prefix) and
    the two exploitabilities agree. Bounds: 4.5 binomial standard deviations per information set,
    plus 0.03 for the engines' bf16-against-float32 kernels (~0.045 nats a token); the
    exploitabilities within 1.7 half-widths of the 95% bootstrap interval (about 99.9%: the
    interval alone covers ~94%, measured, so asserting it would fail one run in twenty) plus 0.01.
    Measured here: exact 0.337, sampled 0.321 [0.287, 0.352]."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envs import kuhn_eval
    from selfplay.commands.evaluate import model_policy

    n = 64
    out = _eval("--model", "smollm2-135m-instruct", "--envs", "KuhnPoker-v0", "--games", "1",
                "envs=[{id: selfplay/KuhnPoker-v0, answer_prefix: '\\boxed{', answer_choices: true}]",
                "eval.opponents=[strong]", f"eval.infoset_samples={n}", "rollout.kv_cache_gib=1",
                "rollout.temperature=0.7")
    sampled = out["kuhn_sampled"]
    assert sampled["replies"] == n and max(sampled["invalid_share"].values()) == 0.0
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    exact = model_policy(model, AutoTokenizer.from_pretrained(smollm2), "\\boxed{", 0.7, answer_choices=True)
    for key, dist in exact.items():
        for action, p in dist.items():
            bound = 4.5 * math.sqrt(p * (1 - p) / n) + 0.03
            assert abs(sampled["policy"][key][action] - p) <= bound, (key, action, p, sampled["policy"][key])
    expl = out["kuhn_exact"][names.KUHN_EXACT_EXPLOITABILITY]
    assert expl == pytest.approx(kuhn_eval.exploitability(exact), abs=1e-4)
    low, high = sampled[names.KUHN_EXPLOITABILITY_LOW], sampled[names.KUHN_EXPLOITABILITY_HIGH]
    assert abs(sampled[names.KUHN_EXPLOITABILITY] - expl) <= 1.7 * (high - low) / 2 + 0.01, (expl, low, high)


def _kuhn_value_p0(first: dict, second: dict) -> float:
    """Player 0's expected chips per hand, ``first`` in seat 0 and ``second`` in seat 1, by plain
    enumeration: 6 deals; ante 1, one bet of 1; a fold loses the antes, a showdown the pot."""
    total = 0.0
    for c0 in "JQK":
        for c1 in "JQK".replace(c0, ""):
            win = 1 if "JQK".index(c0) > "JQK".index(c1) else -1
            p0, p1 = (lambda h, a: first[f"{c0}:{h}"][a]), (lambda h, a: second[f"{c1}:{h}"][a])
            after_check = (p1("check", "check") * win
                           + p1("check", "bet") * (p0("check,bet", "call") * 2 * win - p0("check,bet", "fold")))
            after_bet = p1("bet", "call") * 2 * win + p1("bet", "fold")
            total += (p0("", "check") * after_check + p0("", "bet") * after_bet) / 6
    return total


def test_sat_pass_at_k_groups_answers_by_problem_not_by_position():
    """Two problems of three answers each, delivered interleaved: problem a solved 3 times of 3,
    problem b never. pass@1 = (1 + 0) / 2 = 1/2 and pass@3 = (1 + 0) / 2 = 1/2. Grouped by
    position instead, (a, b, a) and (b, a, b) hold 2 and 1 solved answers: pass@1 is again 1/2
    but pass@3 would be (1 + 1) / 2 = 1."""
    from selfplay.commands.evaluate import level_rows
    from selfplay.core.samples import Episode

    def answer(i: int, problem: str, solved: bool) -> Episode:
        return Episode("selfplay/SAT-v0", f"e{i}", [], {0: 1.0 if solved else 0.0}, [0], group_id=problem)

    order = [("a", True), ("b", False)] * 3
    row = level_rows([answer(i, p, s) for i, (p, s) in enumerate(order)], (3, 5, 20), instances=2, samples=3)
    assert row["pass@1"] == pytest.approx(0.5)
    assert row["pass@3"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="expected 2 problems of 3 answers"):
        level_rows([answer(i, p, s) for i, (p, s) in enumerate(order[:5])], (3, 5, 20), instances=2, samples=3)
