"""One engine, several LoRA adapters (one per policy, ``policies:``): vLLM serves each request with
the adapter it names (multi-LoRA batching), checked against transformers + peft in float32 on the
tiny model as tests/actors/test_lora_engines.py checks one adapter; a new version of one adapter
leaves the others alone; the transformers engine (merged weights) refuses several. The adapter
bookkeeping, the folder of several adapters and the worker's loading run on stand-ins (fast).

The vLLM engine is the one shared with tests/actors/test_lora_engines.py (``vllm_lora`` in
conftest.py): it serves ``default`` too, which these tests never load (that module's), so they
check the ids vLLM holds of ``first`` and ``second`` and leave the others' as they found them.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from unittest.mock import create_autospec

import pytest

from actors.engine import EngineSettings, SamplingSettings
from engine_helpers import PROMPTS, greedy_hf, recompute_logprobs, token_ids
from lora_helpers import RANK, held, load_peft, lora_ids, make_adapter
from selfplay.core.lora_format import read_folder_files

MEAN_TOL, MAX_TOL = 1e-3, 1e-2
NAMES = ("first", "second")
GREEDY = SamplingSettings(max_new_tokens=8, temperature=0.0)
SAMPLED = SamplingSettings(max_new_tokens=12, temperature=0.7, seed=5)


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[tuple[str, int], str]:
    """PEFT folders by (adapter, version): first v1, v2, v3 and second v1, all different."""
    root = tmp_path_factory.mktemp("multi")
    keys = [("first", 1), ("second", 1), ("first", 2), ("first", 3)]
    return {key: make_adapter(tiny_model, str(root / f"{key[0]}-v{key[1]}"), seed=30 + i)
            for i, key in enumerate(keys)}


@pytest.fixture(scope="module")
def references(tiny_model, adapters, reference) -> dict[object, object]:
    """float32 transformers + peft per (adapter, version) used in the checks; None: the base."""
    return {None: reference, **{key: load_peft(tiny_model, adapters[key])
                                for key in [("first", 1), ("second", 1), ("first", 2)]}}


def _run_all(engine, requests: list[tuple[str | None, str, SamplingSettings]]):
    """All ``(adapter, prompt, sampling)`` requests in flight at once, answers in order."""
    async def run():
        return await asyncio.gather(*[engine.generate(token_ids(engine, p), s, adapter=a)
                                      for a, p, s in requests])
    return asyncio.run(run())


def _check_answers(engine, served: dict[str | None, object], prompts: list[str]) -> dict:
    """Greedy and sampled requests for every adapter in ``served`` (name -> reference model) and
    prompt, all at once: each answer is its own adapter's. Returns the greedy answers by
    (adapter, prompt)."""
    requests = [(a, p, s) for a in served for p in prompts for s in (GREEDY, SAMPLED)]
    outs = _run_all(engine, requests)
    diffs, greedy = [], {}
    for (adapter, prompt, sampling), out in zip(requests, outs):
        ids, model = token_ids(engine, prompt), served[adapter]
        if sampling is GREEDY:
            assert out.token_ids == greedy_hf(model, ids, 8), (adapter, prompt)
            greedy[adapter, prompt] = out.token_ids
        # Greedy requests report the untempered log-softmax, sampled ones the tempered one.
        temperature = 1.0 if sampling is GREEDY else sampling.temperature
        diffs += [abs(a - b) for a, b in zip(out.logprobs, recompute_logprobs(model, ids, out.token_ids,
                                                                             temperature))]
    assert sum(diffs) / len(diffs) < MEAN_TOL and max(diffs) < MAX_TOL, (sum(diffs) / len(diffs), max(diffs))
    return greedy


def _check_same(outs, others) -> None:
    """Two lists of answers are the same answers (greedy tokens, log-probs to rounding)."""
    assert [o.token_ids for o in outs] == [o.token_ids for o in others]
    assert max(abs(a - b) for x, y in zip(outs, others) for a, b in zip(x.logprobs, y.logprobs)) < 1e-4


@pytest.mark.slow
def test_vllm_serves_each_adapter_to_the_requests_that_name_it(vllm_lora, adapters, references):
    prompts = PROMPTS[:2]
    ids = held(vllm_lora)  # default's, which these tests leave alone
    # Nothing loaded yet: every name is the base.
    base = _check_answers(vllm_lora, {"first": references[None], "second": references[None]}, prompts[:1])
    vllm_lora.load_adapter(adapters["first", 1], 1, name="first")
    # A name with nothing loaded stays the base, in the same batches as an adapter.
    _check_answers(vllm_lora, {"first": references["first", 1], "second": references[None]}, prompts[:1])
    vllm_lora.load_adapter(adapters["second", 1], 1, name="second")
    greedy = _check_answers(vllm_lora, {"first": references["first", 1], "second": references["second", 1]},
                            prompts)
    assert greedy["first", prompts[0]] != greedy["second", prompts[0]] != base["second", prompts[0]]
    # Ids: version * 3 + index + 1, one per (adapter, version): {5} and {6}.
    assert held(vllm_lora) == {**ids, "first": lora_ids("first", 1), "second": lora_ids("second", 1)}
    # No adapter named: the default adapter (the one shared policy), whatever it holds now, in
    # the same batches as the others.
    outs = _run_all(vllm_lora, [(a, p, GREEDY) for a in (None, "default", "first") for p in prompts])
    _check_same(outs[:len(prompts)], outs[len(prompts):2 * len(prompts)])


@pytest.mark.slow
def test_vllm_new_version_of_one_adapter_leaves_the_other_alone(vllm_lora, adapters, references):
    prompts = PROMPTS[2:3]
    vllm_lora.load_adapter(adapters["first", 1], 1, name="first")
    vllm_lora.load_adapter(adapters["second", 1], 1, name="second")
    ids = held(vllm_lora)
    before = _run_all(vllm_lora, [("second", p, GREEDY) for p in prompts])
    vllm_lora.load_adapter(adapters["first", 2], 2, name="first")
    _check_answers(vllm_lora, {"first": references["first", 2], "second": references["second", 1]}, prompts)
    _check_same(_run_all(vllm_lora, [("second", p, GREEDY) for p in prompts]), before)
    # max_loras 2 per adapter: first's version 1 goes at its third version, second's stays (and
    # so do default's).
    assert held(vllm_lora) == {**ids, "first": lora_ids("first", 1, 2)}
    assert ids["second"] == lora_ids("second", 1)
    vllm_lora.load_adapter(adapters["first", 3], 3, name="first")
    assert held(vllm_lora) == {**ids, "first": lora_ids("first", 2, 3)}


def test_unknown_adapter_names_are_refused(tiny_model):
    from actors.hf_engine import TransformersEngine
    from actors.vllm_engine import VLLMEngine

    engine = VLLMEngine("/models/x", EngineSettings(lora_rank=RANK, adapters=NAMES))
    with pytest.raises(ValueError, match="serves first, second"):
        asyncio.run(engine.generate([1, 2], GREEDY, adapter="third"))
    with pytest.raises(ValueError, match="serves first, second"):
        engine.load_adapter("/dev/shm/x", 1, name="default")
    with pytest.raises(ValueError, match="rollout.backend vllm"):
        TransformersEngine(tiny_model, EngineSettings(adapters=NAMES))
    one = TransformersEngine(tiny_model, EngineSettings(adapters=("first",)))
    with pytest.raises(ValueError, match="serves one adapter"):
        asyncio.run(one.generate([1, 2], GREEDY, adapter="second"))
    with pytest.raises(ValueError, match="serves one adapter"):
        one.load_adapter("/dev/shm/x", 1)  # the default name is not this engine's


def test_a_request_naming_no_adapter_runs_with_default_if_served_else_the_base():
    from actors.vllm_engine import VLLMEngine

    name = lambda adapters: VLLMEngine("/models/x", EngineSettings(adapters=adapters))._adapter_name(None)  # noqa: E731
    assert name(("default",)) == name(("first", "default")) == "default"
    assert name(NAMES) is None and name(("first",)) is None  # the base weights
    assert VLLMEngine("/models/x", EngineSettings(adapters=NAMES))._adapter_name("second") == "second"


def test_lora_ids_and_engine_args_for_several_adapters():
    from actors.vllm_engine import VLLMEngine, lora_id

    ids = {lora_id(NAMES, n, v) for n in NAMES for v in range(5)}
    assert len(ids) == 10 and min(ids) == 1
    assert [lora_id(("default",), "default", v) for v in range(3)] == [1, 2, 3]  # as with one adapter
    args = VLLMEngine("/models/x", EngineSettings(lora_rank=8, max_loras=3, adapters=NAMES)).engine_args()
    assert (args.max_loras, args.max_cpu_loras) == (6, 8)


def test_each_adapter_keeps_its_own_newest_versions():
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM

    from actors.vllm_engine import VLLMEngine

    engine = VLLMEngine("unused", EngineSettings(lora_rank=RANK, max_loras=1, adapters=NAMES))
    engine._llm = create_autospec(AsyncLLM, instance=True)
    engine._llm.add_lora.return_value = True
    removed = lambda: [c.args[0] for c in engine._llm.remove_lora.call_args_list]  # noqa: E731
    request = lambda n, v: LoRARequest(lora_name=f"{n}-v{v}", lora_int_id=v * 2 + NAMES.index(n) + 1,  # noqa: E731
                                       lora_path=f"/dev/shm/{n}-v{v}")

    async def run():
        await engine._load_adapter(request("first", 1), "first")  # id 3
        await engine._load_adapter(request("second", 1), "second")  # id 4
        assert removed() == []  # another adapter's version does not push one out
        engine._lora_running[4] += 1  # a request of second v1 still running
        await engine._load_adapter(request("first", 2), "first")  # id 5
        await engine._load_adapter(request("second", 2), "second")  # id 6
        assert removed() == [3]  # second v1 waits for its request
        engine._release_lora(4)
        await asyncio.sleep(0)
        assert removed() == [3, 4]
        assert {n: r.lora_int_id for n, r in engine._lora_current.items()} == {"first": 5, "second": 6}

    asyncio.run(run())
    assert engine._lora_ids == {"first": [5], "second": [6]} and not engine._lora_retired


def test_worker_loads_one_subfolder_per_policy(tmp_path, monkeypatch):
    from actors.rollout_worker import RolloutWorker, engine_settings
    from selfplay.config import load_config
    from selfplay.core.config_schema import PolicyConfig

    cfg = load_config("debug", [])
    policies = [PolicyConfig(name="first", roles=[0]), PolicyConfig(name="second", roles=[1])]
    assert engine_settings(cfg.rollout, policies=policies).adapters == NAMES
    assert engine_settings(cfg.rollout).adapters == ("default",)
    loaded: list[tuple[str, int, str, dict]] = []

    def load_adapter(path: str, version: int, name: str = "default") -> dict[str, float]:
        loaded.append((os.path.relpath(path, folder), version, name, read_folder_files(path)))
        return {"sync/load_s": 0.5}

    worker = RolloutWorker("unused", cfg.rollout, cfg.envs, cfg.eval, policies=policies)
    worker.engine = SimpleNamespace(load_adapter=load_adapter)
    files = {f"{n}/{f}": f"{n} {f}".encode() for n in NAMES for f in ("adapter_config.json",
                                                                        "adapter_model.safetensors")}
    folder = str(tmp_path / "v7")
    monkeypatch.setattr("selfplay.core.weight_format.adapter_folder", lambda version: folder)
    figures = worker.update_adapter(files, 7)
    assert [(p, v, n) for p, v, n, _ in loaded] == [("first", 7, "first"), ("second", 7, "second")]
    assert loaded[1][3] == {"adapter_config.json": b"second adapter_config.json",
                            "adapter_model.safetensors": b"second adapter_model.safetensors"}
    assert worker.weight_version == 7 and figures["sync/load_s"] > 0
    loaded.clear()
    single = RolloutWorker("unused", cfg.rollout, cfg.envs, cfg.eval)  # no policies: as before
    single.engine = SimpleNamespace(load_adapter=lambda path, version: loaded.append((path, version)) or {})
    single.update_adapter_from_folder(str(tmp_path), 8)
    assert loaded == [(str(tmp_path), 8)] and single.weight_version == 8
