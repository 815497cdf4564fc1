"""Exact Kuhn Poker evaluation: game value, best responses, exploitability, and the prompts at
each information set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.base import ANSWER_FORMAT
from envs.kuhn_eval import (DEALS, INFOSET_KEYS, INFOSETS, best_response, best_response_value,
                            equilibrium_policy, expected_value, exploitability, infoset_prompts,
                            sampled_exploitability, uniform_policy)
from envs.kuhn_poker import KuhnPokerEnv

ALPHAS = [0.0, 1 / 6, 1 / 3]


def pure(choices: dict[str, str]) -> dict[str, dict[str, float]]:
    """A pure policy: the named action at listed keys, the first legal action elsewhere."""
    return {i.key: {a: float(a == choices.get(i.key, i.actions[0])) for a in i.actions} for i in INFOSETS}


ALWAYS_BET = pure({f"{c}:": "bet" for c in "JQK"})
CALL_WITH_Q_OR_K = pure({"Q:bet": "call", "K:bet": "call", "J:bet": "fold"})
ALWAYS_FOLD = pure({f"{c}:bet": "fold" for c in "JQK"})
# Second seat: calls every bet, checks behind every check.
CALL_ALL_CHECK_BEHIND = pure({f"{c}:bet": "call" for c in "JQK"} | {f"{c}:check": "check" for c in "JQK"})


def test_there_are_twelve_information_sets_six_per_seat():
    assert len(INFOSETS) == 12 and len(set(INFOSET_KEYS)) == 12
    seat0 = {f"{c}:{h}" for c in "JQK" for h in ("", "check,bet")}
    seat1 = {f"{c}:{h}" for c in "JQK" for h in ("check", "bet")}
    assert {i.key for i in INFOSETS if i.seat == 0} == seat0
    assert {i.key for i in INFOSETS if i.seat == 1} == seat1
    assert len(DEALS) == 6


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_equilibrium_is_worth_minus_one_eighteenth_to_player_0(alpha):
    eq = equilibrium_policy(alpha)
    assert abs(expected_value(eq, eq) - (-1 / 18)) < 1e-12


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_equilibrium_is_unexploitable(alpha):
    eq = equilibrium_policy(alpha)
    assert abs(exploitability(eq)) < 1e-12
    # Each best responder only recovers the game value: -1/18 as P0, +1/18 as P1.
    assert abs(best_response_value(eq, 0) + 1 / 18) < 1e-12
    assert abs(best_response_value(eq, 1) - 1 / 18) < 1e-12


def test_always_bet_against_always_fold_wins_one_chip():
    # Every deal: bet, fold -> +1 to player 0.
    assert expected_value(ALWAYS_BET, ALWAYS_FOLD) == pytest.approx(1.0, abs=1e-12)


def test_always_bet_against_calling_with_q_or_k_loses_a_third():
    # Deals (P0, P1): (J,Q) call -2, (J,K) call -2, (Q,J) fold +1, (Q,K) call -2,
    # (K,J) fold +1, (K,Q) call +2; sum -2 over 6 deals = -1/3.
    assert expected_value(ALWAYS_BET, CALL_WITH_Q_OR_K) == pytest.approx(-1 / 3, abs=1e-12)


def test_best_response_as_player_0_against_a_calling_station():
    # P1 calls every bet and checks behind. P0's best: K bets (+2 vs J and Q: 4), Q is
    # indifferent (bet: +2 -2, check: +1 -1: 0), J checks (-1 -1 = -2; betting loses 4).
    # Value (4 + 0 - 2) / 6 = 1/3.
    assert best_response_value(CALL_ALL_CHECK_BEHIND, 0) == pytest.approx(1 / 3, abs=1e-12)
    br = best_response(CALL_ALL_CHECK_BEHIND, 0)
    assert br["K:"]["bet"] == 1.0 and br["J:"]["check"] == 1.0
    assert expected_value(br, CALL_ALL_CHECK_BEHIND) == pytest.approx(1 / 3, abs=1e-12)


def test_best_response_as_player_1_against_always_bet():
    # P1 facing every bet: K calls (+2 +2 = 4), Q calls (+2 vs J, -2 vs K: 0; folding: -2),
    # J folds (-1 -1 = -2; calling: -4). Value (4 + 0 - 2) / 6 = 1/3.
    assert best_response_value(ALWAYS_BET, 1) == pytest.approx(1 / 3, abs=1e-12)
    br = best_response(ALWAYS_BET, 1)
    assert br["K:bet"]["call"] == br["Q:bet"]["call"] == br["J:bet"]["fold"] == 1.0


def test_uniform_random_play_is_exploitable():
    u = uniform_policy()
    # Seat 1's best response to a uniform P0 is worth 15/36, as in OpenSpiel's
    # action_value_vs_best_response_test; seat 0's is worth 18/36 (NashConv 11/12).
    assert best_response_value(u, 1) == pytest.approx(15 / 36, abs=1e-12)
    assert exploitability(u) == pytest.approx((18 / 36 + 15 / 36) / 2, abs=1e-12)
    assert exploitability(u) > 0


def test_a_best_response_is_never_worse_than_any_policy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = (random_policy(rng) for _ in range(2))
        assert best_response_value(b, 0) >= expected_value(a, b) - 1e-12
        assert best_response_value(a, 1) >= -expected_value(a, b) - 1e-12
        assert exploitability(a) >= -1e-12


def brute_force_best_response(policy, seat: int) -> float:
    """The best value over all 2^6 = 64 pure strategies of ``seat``, each played out exactly
    with :func:`expected_value`: an independent check of the backward pass."""
    keys = [i for i in INFOSETS if i.seat == seat]
    best = -np.inf
    for choice in itertools.product(*(i.actions for i in keys)):
        mine = pure({i.key: a for i, a in zip(keys, choice)})
        value = expected_value(mine, policy) if seat == 0 else -expected_value(policy, mine)
        best = max(best, value)
    return best


def card_aware_policy(rng: np.random.Generator, pure_share: float = 0.3) -> dict[str, dict[str, float]]:
    """A random policy whose action probabilities differ by card; some entries pure (0 or 1),
    the rest drawn from a U-shaped Beta so that cards are often told apart sharply."""
    out = {}
    for i in INFOSETS:
        p = float(rng.integers(2)) if rng.random() < pure_share else float(rng.beta(0.5, 0.5))
        out[i.key] = {i.actions[0]: p, i.actions[1]: 1 - p}
    return out


@pytest.mark.parametrize("seat", [0, 1])
def test_the_best_response_equals_a_brute_force_over_every_pure_strategy(seat):
    # 200 random card-aware policies, mixed and partly pure, plus 20 wholly pure ones. A backward
    # pass that chose the responder's action without weighting each opponent card by its reach
    # probability is off by up to 0.17 on such policies (it is right on card-blind ones).
    rng = np.random.default_rng(seat)
    policies = [card_aware_policy(rng) for _ in range(200)] + [card_aware_policy(rng, 1.0) for _ in range(20)]
    worst = 0.0
    for policy in policies:
        exact, brute = best_response_value(policy, seat), brute_force_best_response(policy, seat)
        worst = max(worst, abs(exact - brute))
        # The returned pure response earns exactly the reported value.
        br = best_response(policy, seat)
        played = expected_value(br, policy) if seat == 0 else -expected_value(policy, br)
        assert played == pytest.approx(exact, abs=1e-12)
    assert worst < 1e-12


def test_exploitability_matches_the_brute_force_and_is_at_least_the_policys_own_loss():
    rng = np.random.default_rng(7)
    for _ in range(50):
        policy = card_aware_policy(rng)
        brute = (brute_force_best_response(policy, 0) + brute_force_best_response(policy, 1)) / 2
        assert exploitability(policy) == pytest.approx(brute, abs=1e-12)
        # A best responder earns at least what the policy itself earns in the same seat.
        self_play = expected_value(policy, policy)
        assert best_response_value(policy, 0) >= self_play - 1e-12
        assert best_response_value(policy, 1) >= -self_play - 1e-12


def random_policy(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    out = {}
    for i in INFOSETS:
        p = float(rng.random())
        out[i.key] = {i.actions[0]: p, i.actions[1]: 1 - p}
    return out


def test_the_evaluator_agrees_with_the_environment_on_pure_policies():
    # For pure policies, playing all 6 deals in the real env averages to the exact value.
    rng = np.random.default_rng(1)
    for _ in range(10):
        p0, p1 = (pure({i.key: str(rng.choice(i.actions)) for i in INFOSETS}) for _ in range(2))
        total = 0.0
        for deal in DEALS:
            env = KuhnPokerEnv()
            _, info = env.reset(options={"cards": list(deal)})
            terminated = False
            while not terminated:
                player = info["player"]
                key = f"{deal[player]}:{','.join(env.match.history)}"
                action = max((p0 if player == 0 else p1)[key].items(), key=lambda kv: kv[1])[0]
                _, _, terminated, _, info = env.step(action)
            total += info["rewards"][0]
        assert expected_value(p0, p1) == pytest.approx(total / 6, abs=1e-12)


@pytest.mark.parametrize("bad", [
    {"J:": {"check": 0.5, "bet": 0.4}},    # does not sum to 1
    {"J:": {"call": 1.0}},                 # not a legal action here
    {"J:": {"check": 1.5, "bet": -0.5}},   # negative probability
])
def test_malformed_policies_are_rejected(bad):
    with pytest.raises(ValueError, match=r"policy\['J:'\] = .*: need probabilities over"):
        expected_value(uniform_policy() | bad, uniform_policy())


def test_a_policy_missing_information_sets_is_rejected():
    with pytest.raises(ValueError, match="policy has no entry for information set"):
        expected_value({"Q:": {"check": 1.0}}, uniform_policy())


def test_infoset_prompts_come_from_the_real_env_at_each_information_set():
    prompts = infoset_prompts()
    assert list(prompts) == list(INFOSET_KEYS)
    for info in INFOSETS:
        obs, legal = prompts[info.key]
        assert tuple(legal) == info.actions
        assert f"Your card: {info.card}." in obs and obs.endswith(ANSWER_FORMAT)
        assert f"You act {'first' if info.seat == 0 else 'second'}." in obs
    assert "Actions so far: player 0 checked, player 1 bet." in prompts["Q:check,bet"][0]
    assert "Actions so far: none." in prompts["K:"][0]


def test_infoset_prompts_pass_env_kwargs_through():
    plain, lenient = infoset_prompts(), infoset_prompts({"lenient": True})
    assert plain == lenient  # leniency changes parsing, not prompts
    match = infoset_prompts({"num_hands": 2})
    assert "This match has 2 hands" in match["J:"][0]


# ----- sampled exploitability ---------------------------------------------------------------------

def sampled_replies(policy, n: int, rng: np.random.Generator, invalid: float = 0.0):
    """``n`` replies per information set drawn from ``policy``; each invalid with probability
    ``invalid`` (None)."""
    out = {}
    for i in INFOSETS:
        p = policy[i.key][i.actions[0]]
        out[i.key] = [None if rng.random() < invalid else (i.actions[0] if rng.random() < p else i.actions[1])
                      for _ in range(n)]
    return out


def test_sampled_exploitability_converges_to_the_exact_figure():
    policy = card_aware_policy(np.random.default_rng(11), pure_share=0.0)
    figures = sampled_exploitability(sampled_replies(policy, 4000, np.random.default_rng(0)), boots=200)
    assert figures.exploitability == pytest.approx(exploitability(policy), abs=0.02)
    assert figures.low <= exploitability(policy) <= figures.high
    assert figures.high - figures.low < 0.06


@pytest.mark.parametrize("name", ["card-aware", "equilibrium"])
def test_the_bootstrap_interval_covers_the_true_exploitability(name):
    # Measured over 100 repetitions of 64 replies per information set: 0.94 for a card-aware
    # mixed policy, 0.98 uniform, 0.92 near the equilibrium, 0.82 at it (the boundary: the
    # estimate can only err upward). A percentile interval covers the equilibrium 0 times in 100.
    policy = (card_aware_policy(np.random.default_rng(3), pure_share=0.0) if name == "card-aware"
              else equilibrium_policy())
    truth, rng = exploitability(policy), np.random.default_rng(1)
    covered = sum(figures.low <= truth <= figures.high
                  for figures in (sampled_exploitability(sampled_replies(policy, 64, rng), boots=300, seed=r)
                                  for r in range(100)))
    assert covered >= 75


def test_invalid_replies_are_left_out_of_the_frequencies():
    replies = {i.key: [i.actions[0]] * 30 + [i.actions[1]] * 9 + [None] for i in INFOSETS}
    figures = sampled_exploitability(replies, boots=50)
    assert figures.applicable and figures.replies == 40
    assert all(figures.policy[k][i.actions[0]] == pytest.approx(30 / 39) for i in INFOSETS for k in [i.key])
    assert figures.invalid_share["K:bet"] == pytest.approx(1 / 40)


def test_a_policy_that_mostly_fails_the_format_gets_no_figure():
    # The equilibrium's valid replies would score near 0; 10% invalid at one information set
    # makes the figure not applicable, whatever the valid remainder looks like.
    replies = sampled_replies(equilibrium_policy(), 200, np.random.default_rng(2))
    replies["J:bet"] = replies["J:bet"][:180] + [None] * 20
    figures = sampled_exploitability(replies, boots=50)
    assert not figures.applicable and figures.exploitability is None and figures.low is None
    assert figures.invalid_share["J:bet"] == pytest.approx(0.1)
    assert figures.describe().startswith("n/a (invalid share 0.10 at 'J:bet'")
    # Every reply invalid at one information set: no policy there at all.
    replies["Q:"] = [None] * 200
    assert not sampled_exploitability(replies, max_invalid=1.0).applicable


def test_sampled_exploitability_rejects_missing_or_uneven_replies():
    replies = {i.key: [i.actions[0]] * 4 for i in INFOSETS}
    with pytest.raises(ValueError, match=r"no replies for information sets \['K:check,bet'\]"):
        sampled_exploitability({k: v for k, v in replies.items() if k != "K:check,bet"})
    with pytest.raises(ValueError, match="same number"):
        sampled_exploitability(replies | {"J:": ["check"] * 3})
