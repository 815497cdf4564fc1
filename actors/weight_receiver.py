"""The engines' end of weight publishing: the methods vLLM mixes into its worker process.

vLLM imports this module by name in its worker (``EngineSettings.worker_extension``), so it
imports neither Ray nor anything above the shared base. The file format it reads is
:mod:`selfplay.core.weight_format`; the engines' ``update_weights*`` methods call it through
``collective_rpc``.
"""

from __future__ import annotations

import time
from typing import Iterable

import torch

from selfplay.core.weight_format import iter_safetensors


class WeightSyncExtension:
    """Methods vLLM mixes into its worker class (``worker_extension_cls``, vLLM's pattern for RL
    weight updates), called through ``collective_rpc``. ``self`` is vLLM's worker.

    Only ``reload_weights`` (checkpoint-format tensors, then vLLM's own re-processing) works on the
    CPU backend: it repacks weights after loading, so copying into parameters by name does not.
    """

    def _selfplay_reload(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        start = time.perf_counter()
        self.reload_weights(weights_iterator=weights)  # type: ignore[attr-defined]
        self._selfplay_refresh_tied_head()
        return time.perf_counter() - start

    def _selfplay_refresh_tied_head(self) -> None:
        """Work around a vLLM 0.32 CPU bug: a tied LM head receives no weights of its own, so the
        layerwise reload never re-runs its ``process_weights_after_loading``, and the CPU GEMM
        keeps the oneDNN handle packed from the *old* embedding (logits drift from the new model
        by ~0.1 nats). Re-running it re-packs from the reloaded tensor; off the CPU it is a no-op."""
        runner = self.model_runner  # type: ignore[attr-defined]
        if not getattr(runner.model_config.hf_text_config, "tie_word_embeddings", False):
            return
        head = getattr(runner.get_model(), "lm_head", None)
        method = getattr(head, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(head)

    def selfplay_reload_from_file(self, path: str) -> float:
        """Reload all weights from a safetensors file on this node; returns seconds spent."""
        return self._selfplay_reload(iter_safetensors(path))
