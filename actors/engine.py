"""The generation-engine interface, its settings, and the factory that starts one by name.

An engine takes prompt token ids and sampling settings and returns the sampled tokens, their
text and their log-probs under the sampling distribution. ``generate`` is a coroutine: the
episode runner awaits many of them at once and the engine batches whatever is in flight
(continuous batching), so no game waits for the slowest game of a batch.

Import-light: no torch, vLLM or transformers until an engine is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from selfplay.core.policies import DEFAULT_POLICY

if TYPE_CHECKING:
    import torch

#: The generation backends ``make_engine`` knows (``rollout.backend``).
BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample one response."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    #: Evaluation only (training samples the whole tempered distribution, which the learner
    #: scores): drop tokens less likely than ``min_p`` times the most likely one (0: none), and
    #: keep only the ``top_k`` most likely (0: all). Both engines apply temperature, then min-p,
    #: then top-k, then top-p, as vLLM does; greedy requests ignore them.
    min_p: float = 0.0
    top_k: int = 0
    seed: int | None = None
    #: Strings that end the response (kept at its end, as generated); () for none.
    stop: tuple[str, ...] = ()
    #: Sample only these token ids (every other token's logit is -inf before anything else, so
    #: the distribution is renormalised over them and the reported log-probs are of that
    #: distribution, as vLLM's ``allowed_token_ids``); () for the whole vocabulary.
    allowed_token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class EngineSettings:
    """How to build an engine; one type for every backend. A backend ignores the fields that mean
    nothing to it (marked below), so one rollout config can drive either."""

    dtype: str = "auto"
    """auto, bfloat16, float16 or float32 (``auto``: see :mod:`selfplay.core.precision`)."""
    seed: int = 0
    max_model_len: int | None = 2048
    """Longest prompt + response in tokens; None: the model's own limit."""
    weight_sync: str = "auto"
    """How new weights arrive (:data:`selfplay.core.weight_format.WEIGHT_SYNCS`)."""
    lora_rank: int = 0
    """The rank of the LoRA adapters ``load_adapter`` will bring (``trainer.lora.rank``); 0: no
    adapters. vLLM reserves adapter slots of this rank (rounded up to a size it supports); the
    transformers engine merges adapters into its weights and needs nothing reserved."""
    max_loras: int = 1
    """vLLM only: versions kept loaded of each adapter, the newest ones (``trainer.max_staleness +
    1``: requests started under an older version may still be running). vLLM itself is given room
    for ``max_loras * len(adapters)``."""
    adapters: tuple[str, ...] = (DEFAULT_POLICY,)
    """The names of the LoRA adapters the engine serves (``policies:``, one per policy; ``default``
    without it): ``load_adapter(..., name)`` and ``generate(..., adapter=name)`` take these. The
    transformers engine merges adapters into its weights, so it serves one only."""
    # vLLM only
    tensor_parallel_size: int = 1
    """GPUs one engine shards the model over (the worker's GPUs, ``cluster.worker_gpus``)."""
    kv_cache_gib: float = 2.0
    gpu_memory_utilization: float = 0.5
    enforce_eager: bool = True
    enable_prefix_caching: bool = True
    max_num_seqs: int | None = None
    worker_extension: str = "actors.weight_receiver.WeightSyncExtension"
    """vLLM worker-extension class (by name: vLLM's worker process imports it)."""
    # transformers only
    max_batch_size: int = 32
    batch_wait_s: float = 0.01
    device: str | None = None


@dataclass
class Generation:
    """One sampled response. ``logprobs[i]`` is the log-prob of ``token_ids[i]`` under the
    distribution it was sampled from (temperature applied); ``finish_reason`` is ``"stop"``
    (end of sequence or a stop string) or ``"length"`` (hit ``max_new_tokens``)."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


class Engine(Protocol):
    """What a rollout worker needs from a generation engine."""

    tokenizer: Any
    dtype: str
    """The resolved dtype the engine computes in (never ``auto``)."""
    dtype_reason: str
    """Why that dtype (e.g. ``auto: the CPU has no native bf16``), for the start-up log."""

    async def generate(self, prompt_ids: list[int], sampling: SamplingSettings,
                       adapter: str | None = None) -> Generation:
        """Sample one response to ``prompt_ids`` with the newest version of the LoRA adapter
        ``adapter`` (one of ``EngineSettings.adapters``; the base weights while none has been
        loaded under that name). None: the ``default`` adapter
        (:data:`~selfplay.core.policies.DEFAULT_POLICY`, the one shared policy) if the engine
        serves that name, else the base (or full) weights. A name the engine does not serve raises
        ``ValueError``."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, "torch.Tensor"]]) -> dict[str, float]:
        """Load new policy weights (Hugging Face names); returns timing figures in seconds."""
        ...

    def update_weights_from_file(self, path: str) -> dict[str, float]:
        """Load new policy weights from a weights file on this node (the RAM-file transport)."""
        ...

    def load_adapter(self, path: str, version: int, name: str = DEFAULT_POLICY) -> dict[str, float]:
        """Serve every later request for adapter ``name`` (one of ``EngineSettings.adapters``) with
        its weight version ``version`` (a PEFT folder on this node: ``adapter_config.json`` +
        ``adapter_model.safetensors``) on the base weights; returns timing figures in seconds."""
        ...

    def shutdown(self) -> None: ...


async def make_engine(backend: str, model_path: str, settings: EngineSettings | None = None,
                      **overrides: Any) -> Engine:
    """Build and start (``await engine.init()``) the engine named ``backend`` from ``settings``
    (default settings if None) with ``overrides`` applied; an unknown field raises ``TypeError``."""
    settings = replace(settings or EngineSettings(), **overrides)
    if backend == "vllm":
        from actors.vllm_engine import VLLMEngine

        return await VLLMEngine(model_path, settings).init()
    if backend == "transformers":
        from actors.hf_engine import TransformersEngine

        if settings.weight_sync == "nccl":
            raise ValueError("weight_sync='nccl' needs the vllm backend (vLLM's weight-transfer API)")
        return await TransformersEngine(model_path, settings).init()
    raise ValueError(f"unknown engine backend {backend!r}: expected one of {BACKENDS}")
