"""Choosing and starting a generation engine by name; imports its backend only when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep this module import-light: no torch until an engine is made
    from actors.engine import Engine

BACKENDS = ("vllm", "transformers")
# Settings that only mean something to vLLM; the transformers engine accepts and ignores them so
# that one rollout config can drive either backend.
_VLLM_ONLY = ("kv_cache_gib", "gpu_memory_utilization", "enforce_eager", "enable_prefix_caching",
              "max_num_seqs")


async def make_engine(backend: str, model_path: str, **kwargs: Any) -> "Engine":
    """Build and start (``await engine.init()``) the engine named ``backend``.

    ``kwargs`` are the engine's keyword arguments (see :class:`actors.vllm_engine.VLLMEngine` and
    :class:`actors.hf_engine.TransformersEngine`); an unknown one raises ``TypeError``.
    """
    if backend == "vllm":
        from actors.vllm_engine import VLLMEngine

        return await VLLMEngine(model_path, **kwargs).init()
    if backend == "transformers":
        from actors.hf_engine import TransformersEngine

        weight_sync = kwargs.pop("weight_sync", "auto")
        if weight_sync == "nccl":
            raise ValueError("weight_sync='nccl' needs the vllm backend (vLLM's weight-transfer API)")
        for name in _VLLM_ONLY:
            kwargs.pop(name, None)
        return await TransformersEngine(model_path, **kwargs).init()
    raise ValueError(f"unknown engine backend {backend!r}: expected one of {BACKENDS}")
