"""dtype ``auto``: bf16 only where the hardware computes it natively, float32 on other CPUs."""

from __future__ import annotations

import pytest
import torch

from selfplay.config import load_config, shipped_configs
from selfplay.core import precision

AVX2_ONLY = frozenset({"fma", "avx", "avx2"})  # the AMD EPYC without AVX-512 BF16
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "amx_tile", "amx_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given feature flags."""
    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    return use


def test_auto_is_float32_on_a_cpu_without_native_bf16(cpu):
    cpu(AVX2_ONLY)
    name, why = precision.resolve_dtype("auto", "cpu")
    assert name == "float32" and "no native bf16" in why


@pytest.mark.parametrize("flags", [AVX512_BF16, SAPPHIRE_RAPIDS])
def test_auto_is_bfloat16_on_a_cpu_with_native_bf16(cpu, flags):
    cpu(flags)
    name, why = precision.resolve_dtype("auto", "cpu")
    assert name == "bfloat16" and "natively" in why


def test_auto_is_bfloat16_on_a_gpu_whatever_the_cpu(cpu):
    cpu(AVX2_ONLY)
    assert precision.resolve_dtype("auto", "cuda") == ("bfloat16", "auto: GPU")


def test_an_explicit_dtype_is_kept_even_where_it_is_slow(cpu):
    cpu(AVX2_ONLY)
    assert precision.resolve_dtype("bfloat16", "cpu") == ("bfloat16", "as configured")


def test_unknown_dtype_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'bf16'.*expected one of .*'bfloat16'"):
        precision.resolve_dtype("bf16", "cpu")
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        precision.torch_dtype("auto")


def test_this_machines_flags_are_read_from_proc_cpuinfo():
    flags = precision.cpu_flags()
    assert flags, "no flags line in /proc/cpuinfo"
    assert precision.native_bf16_cpu() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_leaves_both_dtypes_to_auto(name):
    cfg = load_config(name)
    assert (cfg.rollout.dtype, cfg.trainer.dtype) == ("auto", "auto")


def test_learner_and_transformers_engine_compute_in_float32_on_an_avx2_cpu(cpu, tiny_model):
    import asyncio

    from actors.engine import EngineSettings
    from actors.hf_engine import TransformersEngine
    from learners.learner import Learner
    from selfplay.core.config_schema import TrainerConfig

    cpu(AVX2_ONLY)
    learner = Learner(tiny_model, TrainerConfig(device="cpu"))
    assert learner.dtype == torch.float32 and not learner.flat.mixed
    engine = asyncio.run(TransformersEngine(tiny_model, EngineSettings(device="cpu")).init())
    try:
        assert engine.dtype == "float32" and next(engine.model.parameters()).dtype == torch.float32
    finally:
        engine.shutdown()
    cpu(AVX512_BF16)
    assert Learner(tiny_model, TrainerConfig(device="cpu")).dtype == torch.bfloat16


def test_vllm_engine_is_built_in_float32_on_an_avx2_cpu(cpu, tiny_model):
    from actors.vllm_engine import VLLMEngine

    cpu(AVX2_ONLY)
    assert VLLMEngine(tiny_model).engine_args().dtype == "float32"  # not vLLM's own "auto"
    cpu(AVX512_BF16)
    assert VLLMEngine(tiny_model).engine_args().dtype == "bfloat16"
