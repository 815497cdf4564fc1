"""Read a language model's Kuhn Poker policy and evaluate it exactly.

At each of the 12 information sets the model sees the real environment's prompt (through the
same chat template as in rollouts); the probability of each legal action is the model's
probability of answering ``\\boxed{<action>}``, renormalised over the legal actions. The result
is a policy for :mod:`envs.kuhn_eval`: exact expected value against the equilibrium and exact
exploitability, with no sampling noise.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from actors.prompting import prompt_ids
from envs import kuhn_eval
from learners.loss import token_logprobs


@torch.no_grad()
def answer_logprob(model: Any, prompt: list[int], answer: list[int]) -> float:
    """log p(answer | prompt) under ``model`` (a causal LM), summed over the answer's tokens."""
    ids = torch.tensor([prompt + answer], device=model.device)
    logits = model(input_ids=ids).logits[:, len(prompt) - 1:-1].float()
    return float(token_logprobs(logits, ids[:, len(prompt):]).sum())


def model_policy(model: Any, tokenizer: Any) -> dict[str, dict[str, float]]:
    """The model's action probabilities at every information set (both seats)."""
    policy = {}
    for key, (observation, legal) in kuhn_eval.infoset_prompts().items():
        ids = prompt_ids(tokenizer, observation)
        scores = [answer_logprob(model, ids, tokenizer.encode(f"\\boxed{{{a}}}", add_special_tokens=False))
                  for a in legal]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        policy[key] = {a: w / sum(weights) for a, w in zip(legal, weights)}
    return policy


def evaluate_policy(policy: kuhn_eval.Policy) -> dict[str, float]:
    """Exact figures: value as each seat against the equilibrium, and exploitability."""
    eq = kuhn_eval.equilibrium_policy()
    return {"kuhn/value_p0_vs_equilibrium": kuhn_eval.expected_value(policy, eq),
            "kuhn/value_p1_vs_equilibrium": -kuhn_eval.expected_value(eq, policy),
            "kuhn/exploitability": kuhn_eval.exploitability(policy)}


def score_model(model_path: str) -> dict[str, float]:
    """Load a model folder with transformers and return its exact Kuhn Poker figures."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    return evaluate_policy(model_policy(model, AutoTokenizer.from_pretrained(model_path)))
