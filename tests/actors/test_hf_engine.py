"""The transformers fallback engine on the tiny model: batching, log-probs, greedy, weight updates."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import torch

from actors.engine import EngineSettings, SamplingSettings
from actors.hf_engine import TransformersEngine, min_p_filter, sampling_logprobs, top_k_filter, top_p_filter
from engine_helpers import (PROMPTS, check_stop_string, check_truncated_sampling, greedy_hf, load_hf,
                            perturbed_state, recompute_logprobs, token_ids)


@pytest.fixture(scope="module")
def engine(tiny_model):
    eng = asyncio.run(TransformersEngine(tiny_model, EngineSettings(dtype="float32", seed=0)).init())
    yield eng
    eng.shutdown()


def test_top_p_keeps_the_nucleus_renormalised():
    # p = [0.5, 0.3, 0.2]; top_p 0.7 keeps the two tokens whose mass first reaches 0.7.
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]])
    logp = top_p_filter(logits, torch.tensor([0.7])).log_softmax(-1)[0]
    assert logp[0].item() == pytest.approx(math.log(0.5 / 0.8), abs=1e-6)
    assert logp[1].item() == pytest.approx(math.log(0.3 / 0.8), abs=1e-6)
    assert logp[2].item() == float("-inf")
    assert torch.equal(top_p_filter(logits, torch.tensor([1.0])), logits)


def test_min_p_and_top_k_filters():
    # p = [0.5, 0.3, 0.15, 0.05]: min_p 0.2 drops what is below 0.1 (the last token); top_k 2
    # keeps the two most likely; 0 turns either off.
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    inf = float("-inf")
    assert min_p_filter(logits, torch.tensor([0.2]))[0, 3].item() == inf
    assert torch.isfinite(min_p_filter(logits, torch.tensor([0.2]))[0, :3]).all()
    assert top_k_filter(logits, torch.tensor([2]))[0].tolist()[2:] == [inf, inf]
    assert torch.equal(min_p_filter(logits, torch.tensor([0.0])), logits)
    assert torch.equal(top_k_filter(logits, torch.tensor([0])), logits)
    # Greedy rows ignore every truncation: their log-probs are the untempered log-softmax.
    greedy = sampling_logprobs(logits, torch.tensor([0.0]), torch.tensor([0.5]), torch.tensor([0.9]),
                               torch.tensor([1]))
    assert torch.allclose(greedy, logits.log_softmax(-1))


def test_truncation_follows_vllms_own_sampler():
    """Temperature, then min-p, then top-k and top-p, as vLLM's v1 sampler (its own functions)."""
    pytest.importorskip("vllm")
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=gen) * 3
    temperature = torch.tensor([0.6, 1.0, 0.6, 0.9, 1.3, 0.6])
    top_p = torch.tensor([0.95, 1.0, 0.5, 0.95, 1.0, 0.8])
    min_p = torch.tensor([0.05, 0.0, 0.1, 0.3, 0.0, 0.05])
    top_k = torch.tensor([40, 5, 0, 10, 1, 3])
    tempered = logits / temperature.unsqueeze(1)
    probs = tempered.softmax(-1)  # vLLM's MinPLogitsProcessor.apply
    tempered = tempered.masked_fill(probs < probs.amax(-1, keepdim=True) * min_p.unsqueeze(1), float("-inf"))
    k = torch.where(top_k > 0, top_k, 50)
    expected = apply_top_k_top_p_pytorch(tempered.clone(), k, top_p).log_softmax(-1)
    ours = sampling_logprobs(logits, temperature, top_p, min_p, top_k)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.allclose(ours[torch.isfinite(ours)], expected[torch.isfinite(expected)], atol=1e-5)


def test_top_k_and_min_p_are_honoured(engine, reference):
    check_truncated_sampling(engine, reference, PROMPTS[2])


def test_concurrent_requests_share_batches(engine):
    async def run():
        sampling = SamplingSettings(max_new_tokens=6, temperature=1.0)
        before = engine.batches_run
        outs = await asyncio.gather(*[engine.generate(token_ids(engine, PROMPTS[i % 4]), sampling)
                                      for i in range(8)])
        return outs, engine.batches_run - before

    outs, batches = asyncio.run(run())
    assert len(outs) == 8 and all(len(o.token_ids) == len(o.logprobs) for o in outs)
    assert batches < 8  # sequential calls would take 8 batches; here most share one


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_teacher_forced_recomputation(engine, reference, temperature):
    """Left padding and the KV cache change nothing: the batched log-probs equal those of one
    unpadded forward pass over prompt + answer, at the sampling temperature."""
    async def run():
        sampling = SamplingSettings(max_new_tokens=12, temperature=temperature, seed=3)
        return await asyncio.gather(*[engine.generate(token_ids(engine, p), sampling) for p in PROMPTS])

    for prompt, out in zip(PROMPTS, asyncio.run(run())):
        expected = recompute_logprobs(reference, token_ids(engine, prompt), out.token_ids, temperature)
        assert max(abs(a - b) for a, b in zip(out.logprobs, expected)) < 1e-3


def test_greedy_equals_argmax_decoding(engine, reference):
    ids = token_ids(engine, PROMPTS[0])
    out = asyncio.run(engine.generate(ids, SamplingSettings(max_new_tokens=8, temperature=0.0)))
    assert out.token_ids == greedy_hf(reference, ids, 8)
    assert out.finish_reason == "length"


def test_same_seed_same_sample(engine):
    ids = token_ids(engine, PROMPTS[1])
    sampling = SamplingSettings(max_new_tokens=8, temperature=1.0, seed=11)
    a = asyncio.run(engine.generate(ids, sampling))
    b = asyncio.run(engine.generate(ids, sampling))
    assert a.token_ids == b.token_ids


def test_update_weights_in_place_then_restore(engine, reference, tiny_model):
    ids = token_ids(engine, PROMPTS[0])
    greedy = SamplingSettings(max_new_tokens=8, temperature=0.0)
    original = {k: v.detach().clone() for k, v in reference.named_parameters()}
    new = perturbed_state(reference, seed=1)
    start = time.perf_counter()
    figures = engine.update_weights(new.items())
    wall = time.perf_counter() - start
    # Every tensor sent is copied once: the figure is their bytes, not an estimate.
    assert figures["sync/mb"] == sum(t.numel() * t.element_size() for t in new.values()) / 1e6
    # The parts of the update add up within the whole, which fits in a clock around the call; so
    # the rate is at least the bytes over that clock.
    assert figures["sync/serialize_s"] + figures["sync/load_s"] <= figures["sync/total_s"] <= wall
    assert figures["sync/mb_per_s"] >= figures["sync/mb"] / wall
    changed = load_hf(tiny_model)
    changed.load_state_dict(new, strict=False)
    out = asyncio.run(engine.generate(ids, greedy))
    assert out.token_ids == greedy_hf(changed, ids, 8)
    expected = recompute_logprobs(changed, ids, out.token_ids)
    assert max(abs(a - b) for a, b in zip(out.logprobs, expected)) < 1e-3
    engine.update_weights(original.items())
    assert asyncio.run(engine.generate(ids, greedy)).token_ids == greedy_hf(reference, ids, 8)


def test_unknown_weight_names_are_refused(engine):
    with pytest.raises(KeyError, match="not a weight"):
        engine.update_weights([("model.no_such.weight", torch.zeros(1))])


def test_factory_builds_the_fallback_from_a_vllm_style_config(tiny_model):
    """The rollout worker passes the same settings whatever the backend; vLLM-only ones are dropped."""
    from actors.engine import make_engine

    async def run():
        eng = await make_engine("transformers", tiny_model, dtype="float32", seed=0, max_model_len=16,
                                kv_cache_gib=2.0, gpu_memory_utilization=0.5, enforce_eager=True,
                                weight_sync="auto")
        try:
            ids = eng.tokenizer(PROMPTS[0]).input_ids
            return len(ids), await eng.generate(ids, SamplingSettings(max_new_tokens=64, temperature=0.0))
        finally:
            eng.shutdown()

    prompt_len, out = asyncio.run(run())
    assert len(out.token_ids) == 16 - prompt_len  # cut at max_model_len, as vLLM does
    assert out.finish_reason == "length"


def test_factory_refuses_unknown_backends_and_nccl_without_vllm(tiny_model):
    from actors.engine import make_engine

    with pytest.raises(ValueError, match="unknown engine backend"):
        asyncio.run(make_engine("sglang", tiny_model))
    with pytest.raises(ValueError, match="nccl"):
        asyncio.run(make_engine("transformers", tiny_model, weight_sync="nccl"))


def test_a_stop_string_ends_the_response_and_stays_in_it(engine):
    check_stop_string(engine, PROMPTS[0])
