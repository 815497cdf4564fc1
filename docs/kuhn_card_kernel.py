"""How far does an update for one Kuhn Poker card move the others? (README: "Why the card goes last")

For each betting history, the cosine between the gradients (with respect to every parameter) of
the difference between the two legal actions' logits at the information sets that differ only in
the card, after a forced-answer prefix. Near 1: every update moves J, Q and K alike.

    python docs/kuhn_card_kernel.py tiny '\\boxed{' '\\boxed{$card'
    python docs/kuhn_card_kernel.py smollm2-135m-instruct '\\boxed{$card'
"""

from __future__ import annotations

import itertools
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from envs import kuhn_eval
from envs.kuhn_poker import CARDS, DECISIONS, infoset_key
from selfplay.commands.evaluate import infoset_inputs
from selfplay.model_cache import resolve_model


def gradients(model, tokenizer, prefix: str) -> dict[str, torch.Tensor]:
    """The gradient of logit(first action) - logit(second action) at each information set."""
    out = {}
    for info in kuhn_eval.INFOSETS:
        ids, ((first,), (second,)) = infoset_inputs(tokenizer, info, prefix, answer_choices=True)
        model.zero_grad()
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        (logits[first] - logits[second]).backward()
        out[info.key] = torch.cat([p.grad.flatten().double() for p in model.parameters() if p.grad is not None])
    return out


def main(model_name: str, prefixes: list[str]) -> None:
    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for prefix in prefixes:
        grads = gradients(model, tokenizer, prefix)
        print(f"{model_name}, prefix {prefix!r}: gradient cosine between cards (J-Q, J-K, Q-K)")
        for history in DECISIONS:
            keys = [infoset_key(card, history) for card in CARDS]
            cosines = [float(grads[a] @ grads[b] / grads[a].norm() / grads[b].norm())
                       for a, b in itertools.combinations(keys, 2)]
            print(f"  after {','.join(history) or 'nothing'}: " + ", ".join(f"{c:.3f}" for c in cosines))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
