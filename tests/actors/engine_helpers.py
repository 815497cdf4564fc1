"""Small helpers for the engine tests: reference log-probs recomputed by transformers."""

from __future__ import annotations

from typing import Any, Iterator

import torch

PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "1, 2, 3, 4,"]


def load_hf(path: str, dtype: torch.dtype = torch.float32) -> Any:
    """A transformers model in eval mode (float32 by default: the reference should be exact)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


@torch.no_grad()
def recompute_logprobs(model: Any, prompt_ids: list[int], token_ids: list[int],
                       temperature: float = 1.0) -> list[float]:
    """Log-probs of ``token_ids`` after ``prompt_ids`` under softmax(logits / temperature), from
    one unpadded teacher-forced forward pass (no cache, no batching): what a learner computes."""
    ids = torch.tensor([prompt_ids + token_ids])
    logits = model(ids).logits[0, len(prompt_ids) - 1:-1].float()
    logp = (logits / temperature).log_softmax(-1)
    return logp.gather(1, torch.tensor(token_ids).unsqueeze(1)).squeeze(1).tolist()


@torch.no_grad()
def greedy_hf(model: Any, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation by plain argmax decoding (no sampling, no early stop)."""
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt_ids):]


def perturbed_state(model: Any, seed: int = 1, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """A different but still sensible set of weights: every matrix gets seeded noise of ``scale``
    times its own standard deviation (norms stay as they were)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.named_parameters():  # tied weights once, as they are stored
        tensor = tensor.detach()
        noise = torch.randn(tensor.shape, generator=gen) * tensor.float().std() * scale
        state[name] = tensor + noise.to(tensor.dtype) if tensor.dim() == 2 else tensor.clone()
    return state


def token_ids(engine: Any, text: str) -> list[int]:
    """``text`` as prompt token ids with the engine's own tokenizer."""
    return engine.tokenizer(text).input_ids


def vllm_engine(path: str, **settings: Any) -> Iterator[Any]:
    """A module fixture's body: a vLLM engine on ``path`` (started on a loop of its own, which
    outlives each test's loop), shut down afterwards."""
    import asyncio

    from actors.engine import make_engine

    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(make_engine("vllm", path, **settings))
    yield engine
    engine.shutdown()
    loop.close()


def check_stop_string(engine: Any, prompt: str) -> None:
    """A stop string ends the response where it first appears and stays at its end (as vLLM's
    ``include_stop_str_in_output``): take a piece of the greedy answer as the stop string."""
    import asyncio
    from dataclasses import replace

    from actors.engine import SamplingSettings

    greedy = SamplingSettings(max_new_tokens=24, temperature=0.0)
    full = asyncio.run(engine.generate(token_ids(engine, prompt), greedy))
    at = next(i for i in range(8, 20) if engine.tokenizer.decode(full.token_ids[i:i + 2]).strip())
    stop = engine.tokenizer.decode(full.token_ids[at:at + 2], skip_special_tokens=True)
    cut = asyncio.run(engine.generate(token_ids(engine, prompt), replace(greedy, stop=(stop,))))
    assert cut.finish_reason == "stop" and stop in cut.text
    assert full.text.startswith(cut.text[:cut.text.index(stop)])
    assert len(cut.token_ids) <= at + 2 and cut.token_ids == full.token_ids[:len(cut.token_ids)]


def check_truncated_sampling(engine: Any, reference: Any, prompt: str) -> None:
    """An engine honours evaluation's ``top_k`` and ``min_p``: every sampled token is among the
    ``top_k`` most likely under the reference, with its log-prob renormalised over those (vLLM's
    ``processed_logprobs``); ``min_p`` 1 keeps only the most likely token, so sampling at
    temperature 1 is greedy decoding."""
    import asyncio

    from actors.engine import SamplingSettings

    ids, k, temperature = token_ids(engine, prompt), 3, 0.8
    sampling = SamplingSettings(max_new_tokens=8, temperature=temperature, top_k=k, seed=7)
    out = asyncio.run(engine.generate(ids, sampling))
    with torch.no_grad():
        logits = reference(torch.tensor([ids + out.token_ids])).logits[0, len(ids) - 1:-1].float()
    for position, token in enumerate(out.token_ids):
        top = (logits[position] / temperature).topk(k)
        assert token in top.indices.tolist(), f"token {position} is not among the top {k}"
        kept = top.values.log_softmax(-1)[top.indices.tolist().index(token)].item()
        assert abs(out.logprobs[position] - kept) < 1e-3
    only_top = SamplingSettings(max_new_tokens=8, temperature=1.0, min_p=1.0, seed=7)
    out = asyncio.run(engine.generate(ids, only_top))
    assert out.token_ids == greedy_hf(reference, ids, len(out.token_ids))
    assert all(abs(lp) < 1e-5 for lp in out.logprobs)  # one token kept: probability 1
