"""The vLLM engine's weight-update control flow, on a stand-in for ``AsyncLLM``: NCCL itself needs
GPUs, but what the engine does around it (pause, resume, prefix-cache reset) is plain Python."""

from __future__ import annotations

import asyncio
from unittest.mock import create_autospec

import pytest

from actors.vllm_engine import VLLMEngine


class FakeLLM:
    """vLLM's own ``AsyncLLM``, autospecced: a misspelt or renamed method, or a call whose
    arguments its real signature refuses, fails here as it would on a GPU. Records the calls in
    order; ``fail`` names a call that raises."""

    def __init__(self, fail: str | None = None, reset_ok: bool = True) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        self.mock = create_autospec(AsyncLLM, instance=True)
        self.mock.reset_prefix_cache.return_value = reset_ok
        self.mock.collective_rpc.return_value = [0.1]
        if fail is not None:
            getattr(self.mock, fail).side_effect = RuntimeError(f"{fail} failed")

    def __getattr__(self, name: str):
        return getattr(self.mock, name)

    @property
    def calls(self) -> list[str]:
        return [name for name, _, _ in self.mock.mock_calls if "." not in name]

    @property
    def paused(self) -> bool:
        """Paused and not resumed since."""
        last = {c: i for i, c in enumerate(self.calls)}
        return last.get("pause_generation", -1) > last.get("resume_generation", -1)


def _engine(llm: FakeLLM) -> VLLMEngine:
    engine = VLLMEngine("unused")
    engine._llm = llm
    return engine


def _round(engine: VLLMEngine) -> None:
    async def run():
        for method in ("start_weight_update", "update_weights", "finish_weight_update"):
            await engine._weight_transfer(method, {})
    asyncio.run(run())


def test_an_nccl_round_pauses_then_resets_the_prefix_cache_and_resumes():
    llm = FakeLLM()
    _round(_engine(llm))
    assert llm.calls == ["pause_generation", "start_weight_update", "update_weights",
                         "finish_weight_update", "reset_prefix_cache", "resume_generation"]


@pytest.mark.parametrize("fail", ["start_weight_update", "update_weights", "finish_weight_update"])
def test_a_failed_nccl_update_never_leaves_the_engine_paused(fail):
    llm = FakeLLM(fail=fail)
    with pytest.raises(RuntimeError, match=f"{fail} failed"):
        _round(_engine(llm))
    assert not llm.paused  # else every later generate() would wait forever


def test_a_prefix_cache_that_did_not_reset_is_an_error_and_the_engine_resumes():
    llm = FakeLLM(reset_ok=False)
    with pytest.raises(RuntimeError, match="did not reset its prefix cache"):
        _round(_engine(llm))
    assert not llm.paused
    llm = FakeLLM(reset_ok=False)
    with pytest.raises(RuntimeError, match="did not reset its prefix cache"):
        asyncio.run(_engine(llm)._swap("selfplay_reload_from_file", "/dev/shm/x"))
    assert not llm.paused


def test_the_stand_in_refuses_what_vllm_does_not_have():
    """The check above is only as good as the stand-in: a method vLLM lacks, or arguments its
    signature refuses, must fail."""
    llm = FakeLLM()
    with pytest.raises(AttributeError):
        llm.start_weight_updates  # noqa: B018 - a misspelt name
    with pytest.raises(TypeError):
        asyncio.run(llm.pause_generation(modus="keep"))


def test_nccl_engine_args_ask_vllm_for_its_nccl_weight_transfer():
    """The real ``engine_args`` with ``weight_sync="nccl"``: vLLM's own ``WeightTransferConfig``
    with the nccl backend, and our worker extension; the cpu path asks for no transfer config."""
    from actors.engine import EngineSettings

    args = VLLMEngine("/models/x", EngineSettings(weight_sync="nccl")).engine_args()
    assert args.weight_transfer_config is not None and args.weight_transfer_config.backend == "nccl"
    assert args.worker_extension_cls == "actors.weight_receiver.WeightSyncExtension"
    assert args.model == "/models/x"
    cpu = VLLMEngine("/models/x", EngineSettings(weight_sync="cpu")).engine_args()
    assert cpu.weight_transfer_config is None


def test_the_worker_extension_named_in_the_settings_imports():
    import importlib

    from actors.engine import EngineSettings

    module, _, name = EngineSettings().worker_extension.rpartition(".")
    assert hasattr(importlib.import_module(module), name)
