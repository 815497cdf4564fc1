"""Both engines serve LoRA adapters (``load_adapter``) on the tiny model (float32), checked against
transformers + peft in float32 as tests/actors/test_engines.py checks full weights: greedy answers
equal, sampled log-probs (temperature-processed, and renormalised over ``allowed_token_ids``) within
the same tolerances. Before an adapter the engines serve the base; a second version replaces the
first for new requests; vLLM keeps at most ``max_loras`` adapters loaded.

One transformers engine serves the module; the vLLM engine (slow to start) is the one shared with
tests/actors/test_multi_lora.py (``vllm_lora`` in conftest.py), which serves other adapters
besides ``default``: these tests load and request ``default`` only (a request naming no adapter
runs with it), and check the ids vLLM holds of that name, whatever the other names hold.
"""

from __future__ import annotations

import asyncio
from unittest.mock import create_autospec

import pytest
import torch

from actors.engine import EngineSettings, SamplingSettings
from engine_helpers import PROMPTS, greedy_hf, recompute_logprobs, token_ids
from lora_helpers import RANK, held, load_peft, lora_ids, make_adapter
from selfplay.core.policies import DEFAULT_POLICY

MEAN_TOL, MAX_TOL = 1e-3, 1e-2
ALLOWED = tuple(range(200, 240))  # a contiguous block of ordinary tokens


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[int, str]:
    """Three adapter versions (1, 2, 3) of the tiny model, PEFT folders."""
    root = tmp_path_factory.mktemp("adapters")
    return {v: make_adapter(tiny_model, str(root / f"v{v}"), seed=10 + v) for v in (1, 2, 3)}


@pytest.fixture(scope="module")
def references(tiny_model, adapters, reference) -> dict[int, object]:
    """The float32 transformers model per version: 0 is the base, the others base + peft adapter."""
    return {0: reference, **{v: load_peft(tiny_model, path) for v, path in adapters.items()}}


def _gather(engine, prompts: list[str], sampling: SamplingSettings):
    async def run():
        return await asyncio.gather(*[engine.generate(token_ids(engine, p), sampling) for p in prompts])
    return asyncio.run(run())


@torch.no_grad()
def _allowed_logprobs(model, prompt_ids: list[int], tokens: list[int]) -> list[float]:
    """Log-probs at temperature 1 renormalised over :data:`ALLOWED` (vLLM's ``allowed_token_ids``)."""
    logits = model(torch.tensor([prompt_ids + tokens])).logits[0, len(prompt_ids) - 1:-1].float()
    blocked = torch.ones(logits.shape[-1], dtype=torch.bool)
    blocked[list(ALLOWED)] = False
    logp = logits.masked_fill(blocked, float("-inf")).log_softmax(-1)
    return logp.gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1).tolist()


def _check_close(diffs: list[float]) -> None:
    assert sum(diffs) / len(diffs) < MEAN_TOL and max(diffs) < MAX_TOL, (sum(diffs) / len(diffs), max(diffs))


def check_serves(engine, model) -> list[list[int]]:
    """The engine's greedy answers, tempered log-probs and allowed-token log-probs are ``model``'s;
    returns the greedy answers (to tell versions apart)."""
    greedy = _gather(engine, PROMPTS[:2], SamplingSettings(max_new_tokens=8, temperature=0.0))
    for prompt, out in zip(PROMPTS[:2], greedy):
        assert out.token_ids == greedy_hf(model, token_ids(engine, prompt), 8)
    sampled = _gather(engine, PROMPTS, SamplingSettings(max_new_tokens=12, temperature=0.7, seed=5))
    _check_close([abs(a - b) for p, out in zip(PROMPTS, sampled) for a, b in
                  zip(out.logprobs, recompute_logprobs(model, token_ids(engine, p), out.token_ids, 0.7))])
    restricted = _gather(engine, PROMPTS[:2], SamplingSettings(max_new_tokens=6, temperature=1.0, seed=3,
                                                               allowed_token_ids=ALLOWED))
    assert all(t in ALLOWED for out in restricted for t in out.token_ids)
    _check_close([abs(a - b) for p, out in zip(PROMPTS[:2], restricted) for a, b in
                  zip(out.logprobs, _allowed_logprobs(model, token_ids(engine, p), out.token_ids))])
    return [out.token_ids for out in greedy]


def check_versions(engine, adapters, references) -> None:
    """Base first, then adapter 1, then adapter 2 replacing it; every answer is its reference's."""
    base = check_serves(engine, references[0])
    figures = engine.load_adapter(adapters[1], 1)
    assert figures["sync/load_s"] > 0
    first = check_serves(engine, references[1])
    engine.load_adapter(adapters[2], 2)
    second = check_serves(engine, references[2])
    assert base != first != second  # the adapters really change the answers


# -- the transformers engine: adapters merged into its weights --------------------------------------

@pytest.fixture(scope="module")
def hf_engine(tiny_model):
    from actors.hf_engine import TransformersEngine

    eng = asyncio.run(TransformersEngine(tiny_model, EngineSettings(dtype="float32", seed=0)).init())
    yield eng
    eng.shutdown()


def test_transformers_engine_serves_each_adapter_version(hf_engine, adapters, references):
    check_versions(hf_engine, adapters, references)
    assert hf_engine.adapter_version == 2


def test_transformers_engine_full_weights_drop_the_adapter(hf_engine, adapters, references):
    hf_engine.load_adapter(adapters[3], 3)
    base = references[0]
    hf_engine.update_weights((n, p.detach()) for n, p in base.named_parameters() if "embed" in n)
    assert hf_engine.adapter_version is None
    check_serves(hf_engine, base)  # the adapted layers are back at their base weights


# -- the vLLM engine: adapters as LoRARequests ------------------------------------------------------

@pytest.mark.slow
def test_vllm_engine_serves_each_adapter_version_and_keeps_max_loras(vllm_lora, adapters, references):
    before = held(vllm_lora)  # the other names' ids, which loading default must leave alone
    check_versions(vllm_lora, adapters, references)
    # ids are version * len(adapters) + index + 1: {4, 7} for default (index 0 of 3)
    assert held(vllm_lora) == {**before, "default": lora_ids("default", 1, 2)}
    vllm_lora.load_adapter(adapters[3], 3)
    # version 1 removed: max_loras 2
    assert held(vllm_lora) == {**before, "default": lora_ids("default", 2, 3)}
    check_serves(vllm_lora, references[3])


@pytest.mark.slow
def test_vllm_request_in_flight_keeps_the_adapter_it_started_with(vllm_lora, adapters, references):
    vllm_lora.load_adapter(adapters[1], 1)
    ids = token_ids(vllm_lora, PROMPTS[0])

    async def run():
        task = asyncio.ensure_future(vllm_lora.generate(ids, SamplingSettings(max_new_tokens=64,
                                                                              temperature=0.0)))
        await asyncio.sleep(0.05)  # the request is running when the next version arrives
        await asyncio.to_thread(vllm_lora.load_adapter, adapters[2], 2)
        return await task

    out = asyncio.run(run())
    assert out.token_ids == greedy_hf(references[1], ids, len(out.token_ids))
    assert out.token_ids != greedy_hf(references[2], ids, len(out.token_ids))  # a switch would show


# -- the vLLM engine's adapter bookkeeping, on a stand-in for AsyncLLM (fast) ----------------------

def _fake_engine(max_loras: int):
    from vllm.v1.engine.async_llm import AsyncLLM

    from actors.vllm_engine import VLLMEngine

    engine = VLLMEngine("unused", EngineSettings(lora_rank=RANK, max_loras=max_loras))
    engine._llm = create_autospec(AsyncLLM, instance=True)
    engine._llm.add_lora.return_value = True
    return engine


def _request(version: int):
    from vllm.lora.request import LoRARequest

    return LoRARequest(lora_name=f"v{version}", lora_int_id=version + 1, lora_path=f"/dev/shm/v{version}")


def test_an_adapter_past_max_loras_waits_for_its_last_request():
    engine = _fake_engine(max_loras=1)
    removed = lambda: [c.args[0] for c in engine._llm.remove_lora.call_args_list]  # noqa: E731

    async def run():
        await engine._load_adapter(_request(1))
        engine._lora_running[2] += 2  # two requests of version 1 still running
        await engine._load_adapter(_request(2))
        assert engine._lora_current[DEFAULT_POLICY].lora_int_id == 3 and removed() == []
        engine._release_lora(2)
        await asyncio.sleep(0)
        assert removed() == []  # one still running
        engine._release_lora(2)
        await asyncio.sleep(0)
        assert removed() == [2]
        await engine._load_adapter(_request(3))  # nothing running on version 2: removed at once
        assert removed() == [2, 3]

    asyncio.run(run())
    assert engine._lora_ids[DEFAULT_POLICY] == [4] and not engine._lora_retired


def test_lora_engine_args():
    from actors.vllm_engine import VLLMEngine, vllm_lora_rank

    args = VLLMEngine("/models/x", EngineSettings(lora_rank=12, max_loras=3)).engine_args()
    assert (args.enable_lora, args.max_lora_rank, args.max_loras, args.max_cpu_loras) == (True, 16, 3, 4)
    assert not VLLMEngine("/models/x", EngineSettings()).engine_args().enable_lora
    assert vllm_lora_rank(8) == 8 and vllm_lora_rank(17) == 32
    with pytest.raises(ValueError, match="up to rank"):
        vllm_lora_rank(1000)
    with pytest.raises(RuntimeError, match="without LoRA"):
        VLLMEngine("/models/x").load_adapter("/dev/shm/x", 1)
