"""The vLLM engine's weight-update control flow, on a stand-in for ``AsyncLLM``: NCCL itself needs
GPUs, but what the engine does around it (pause, resume, prefix-cache reset) is plain Python."""

from __future__ import annotations

import asyncio

import pytest

from actors.vllm_engine import VLLMEngine


class FakeLLM:
    """Records the calls the engine makes; ``fail`` names a call that raises."""

    def __init__(self, fail: str | None = None, reset_ok: bool = True) -> None:
        self.calls: list[str] = []
        self.fail, self.reset_ok = fail, reset_ok

    def __getattr__(self, name: str):
        async def call(*args, **kwargs):
            self.calls.append(name)
            if name == self.fail:
                raise RuntimeError(f"{name} failed")
            return self.reset_ok if name == "reset_prefix_cache" else [0.1]
        return call

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
