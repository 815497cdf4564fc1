"""Reading a model's Kuhn Poker policy and evaluating it exactly."""

from __future__ import annotations

import pytest

from envs import kuhn_eval
from selfplay.commands.evaluate import model_policy
from selfplay.core import metric_names as names
from selfplay.stats.kuhn_figures import exact_metrics as evaluate_policy


def test_the_equilibrium_evaluates_to_minus_one_eighteenth_and_zero_exploitability():
    figures = evaluate_policy(kuhn_eval.equilibrium_policy())
    assert figures[names.KUHN_EXACT_VALUE_P0] == pytest.approx(-1 / 18, abs=1e-12)
    assert figures[names.KUHN_EXACT_VALUE_P1] == pytest.approx(1 / 18, abs=1e-12)
    assert figures[names.KUHN_EXACT_EXPLOITABILITY] == pytest.approx(0.0, abs=1e-12)


def test_a_model_policy_covers_every_infoset_with_a_distribution_over_legal_actions(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    policy = model_policy(model, AutoTokenizer.from_pretrained(tiny_model))
    assert set(policy) == set(kuhn_eval.INFOSET_KEYS)
    for info in kuhn_eval.INFOSETS:
        assert set(policy[info.key]) == set(info.actions)
        assert sum(policy[info.key].values()) == pytest.approx(1.0)
    assert evaluate_policy(policy)[names.KUHN_EXACT_EXPLOITABILITY] > 0  # a random model is exploitable


def test_batched_answer_scores_equal_one_forward_pass_per_answer(tiny_model):
    """The answers of an information set are scored in one padded batch; each score must equal
    the unpadded single-sequence computation (padding never leaks into an answer's logits)."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfplay.commands.evaluate import answer_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    prompt, answers = [1, 50, 60, 70, 80], [[90], [91, 92, 93], [94, 95]]
    batched = answer_logprobs(model, prompt, answers)
    with torch.no_grad():
        for answer, score in zip(answers, batched):
            ids = torch.tensor([prompt + answer])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            alone = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(answer))
            assert score == pytest.approx(alone, abs=1e-4)


def test_a_card_prefix_is_filled_with_each_information_sets_own_card(tiny_model):
    """With ``\\boxed{$card`` each information set is scored after its own card, as the runner
    inserts it (``envs.base``): the same as scoring the filled prefix by hand, and, the card being
    the last token before the action, different between the cards of one betting history."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.prompting import prompt_ids
    from envs.kuhn_poker import KuhnPokerEnv
    from selfplay.commands.evaluate import answer_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    policy = model_policy(model, tok, "\\boxed{$card", 1.0, answer_choices=True)
    prompts = kuhn_eval.infoset_prompts()
    for info in kuhn_eval.INFOSETS:
        insert = "\\boxed{" + info.card
        head = prompt_ids(tok, prompts[info.key][0], KuhnPokerEnv.system_prompt)
        ids = [tok.encode(insert + a, add_special_tokens=False)[-1] for a in info.actions]
        scores = answer_logprobs(model, head + tok.encode(insert, add_special_tokens=False), [[i] for i in ids])
        first = 1 / (1 + math.exp(scores[1] - scores[0]))
        assert policy[info.key][info.actions[0]] == pytest.approx(first, abs=1e-6), info.key
    for history in ("", "check", "bet", "check,bet"):
        firsts = [policy[f"{c}:{history}"] for c in "JQK"]
        assert len({round(next(iter(d.values())), 4) for d in firsts}) == 3, (history, firsts)
