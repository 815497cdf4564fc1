"""The transformers fallback engine, for hosts without vLLM: the same interface, plainly done.

``generate`` only queues a request; one serving thread takes whatever is queued (waiting
``batch_wait_s`` for stragglers, up to ``max_batch_size``), runs it as one left-padded batch with a
KV cache, and resolves each caller's future. Concurrent callers so share forward passes, though
unlike vLLM a batch runs to its end before the next one starts (static, not continuous, batching).
Working in a thread rather than an asyncio task keeps the caller's loop free during forward passes
and lets ``generate`` be awaited from any loop.

**Log-probs** are those of the sampled tokens under the distribution sampled from: log-softmax of
``logits / temperature`` after min-p, top-k and top-p truncation in that order (renormalised over
what they keep), exactly as vLLM's ``processed_logprobs`` mode; greedy requests (temperature 0)
report the untempered log-softmax.

**LoRA adapters** are merged into the engine's own weights (``W = W_base + alpha/r * B @ A``,
:mod:`selfplay.core.lora_format`): it keeps a copy of the base weights of the adapted layers
only, so each new adapter replaces the last one exactly. A batch in progress finishes with the
weights it started with (the update waits for it); queued requests get the new adapter. Merged
weights hold one adapter only: several policies (``EngineSettings.adapters``) need vLLM.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterable

import torch

from actors.engine import EngineSettings, Generation, SamplingSettings
from selfplay.core import metric_names as names
from selfplay.core.policies import DEFAULT_POLICY
from selfplay.core.precision import local_device, resolve_dtype

#: Tokens decoded to look for a stop string; longer than any stop string the project uses.
STOP_WINDOW = 16

@dataclass
class _Request:
    prompt_ids: list[int]
    sampling: SamplingSettings
    future: concurrent.futures.Future


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) the tokens outside each row's nucleus, as vLLM does: sort ascending, drop the
    tokens whose cumulative probability stays within ``1 - top_p``, always keep the top token."""
    if bool((top_p >= 1.0).all()):
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p).unsqueeze(1)
    drop[:, -1] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return sorted_logits.scatter(-1, order, sorted_logits)


def min_p_filter(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) the tokens whose probability is below ``min_p`` times the row's most likely
    token's, as vLLM does (on the tempered distribution); a row's ``min_p`` of 0 keeps every token."""
    if bool((min_p <= 0).all()):
        return logits
    probs = logits.softmax(dim=-1)
    drop = probs < probs.amax(dim=-1, keepdim=True) * min_p.unsqueeze(1)
    return logits.masked_fill(drop, float("-inf"))


def top_k_filter(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) all but each row's ``top_k`` highest logits (tokens tied with the k-th stay,
    as in vLLM); a row's ``top_k`` of 0 keeps every token."""
    if bool((top_k <= 0).all()):
        return logits
    vocab = logits.shape[-1]
    k = torch.where(top_k <= 0, vocab, top_k).clamp(max=vocab).to(torch.long)
    kth = logits.sort(dim=-1, descending=True).values.gather(1, (k - 1).unsqueeze(1))
    return logits.masked_fill(logits < kth, float("-inf"))


def allowed_mask(allowed: list[tuple[int, ...]], vocab: int) -> torch.Tensor | None:
    """``[rows, vocab]`` True where a row may not sample a token (rows with ``()`` allow all), or
    None when no row is restricted."""
    if not any(allowed):
        return None
    blocked = torch.zeros(len(allowed), vocab, dtype=torch.bool)
    for row, ids in enumerate(allowed):
        if ids:
            blocked[row] = True
            blocked[row, list(ids)] = False
    return blocked


def sampling_logprobs(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                      min_p: torch.Tensor | None = None, top_k: torch.Tensor | None = None,
                      blocked: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row log-probs of the distribution each row samples from (float32 logits in): the
    ``blocked`` tokens masked out (:func:`allowed_mask`), then temperature, min-p, top-k and top-p
    (vLLM's order; the last three off for greedy rows)."""
    greedy = temperature <= 0
    scale = torch.where(greedy, torch.ones_like(temperature), temperature)
    if blocked is not None:
        logits = logits.masked_fill(blocked, float("-inf"))
    logits = logits / scale.unsqueeze(1)
    if min_p is not None:
        logits = min_p_filter(logits, torch.where(greedy, 0.0, min_p))
    if top_k is not None:
        logits = top_k_filter(logits, torch.where(greedy, 0, top_k))
    return top_p_filter(logits, torch.where(greedy, 1.0, top_p)).log_softmax(-1)


class TransformersEngine:
    """A Hugging Face model that batches concurrent ``generate`` calls. Then ``await init()``."""

    def __init__(self, model_path: str, settings: EngineSettings | None = None) -> None:
        settings = settings or EngineSettings()
        if len(settings.adapters) != 1:
            raise ValueError(f"the transformers engine serves one LoRA adapter (merged into its weights), "
                             f"not {len(settings.adapters)} ({', '.join(settings.adapters)}); "
                             "several policies need rollout.backend vllm")
        #: The name of the one adapter it serves (``default`` without ``policies:``).
        self.adapter_name = settings.adapters[0]
        self.model_path = model_path
        self.device = settings.device or local_device()
        self.dtype, self.dtype_reason = resolve_dtype(settings.dtype, self.device)
        self.max_model_len = settings.max_model_len
        self.max_batch_size = settings.max_batch_size
        self.batch_wait_s = settings.batch_wait_s
        self.tokenizer: Any = None
        self.model: Any = None
        # Counters for throughput logging and for tests that check batching.
        self.batches_run = 0
        self.forward_passes = 0
        self.requests_served = 0
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()  # held for a whole batch and for a weight update
        self._thread: threading.Thread | None = None
        self._rng = torch.Generator().manual_seed(settings.seed)
        #: Unadapted copies of the weights an adapter has changed (by Hugging Face name).
        self._lora_base: dict[str, torch.Tensor] = {}
        self.adapter_version: int | None = None

    async def init(self) -> "TransformersEngine":
        """Load tokenizer and model (off the caller's loop) and start the serving thread."""
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._serve, name="hf-engine", daemon=True)
        self._thread.start()
        return self

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        self.model = model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = eos
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos)

    async def generate(self, prompt_ids: list[int], sampling: SamplingSettings,
                       adapter: str | None = None) -> Generation:
        """Queue one request and wait for the batch that serves it. ``adapter``: None or the
        engine's one adapter name (the weights hold that adapter merged, if one was loaded). Both
        get the weights it holds: merged weights have no base apart from the adapter, so None
        names the adapter even where it is not ``default`` (with ``policies:`` every request
        names its adapter)."""
        self._check_adapter(adapter)
        if self._thread is None:
            raise RuntimeError("TransformersEngine.init() must be awaited first")
        if self.max_model_len is not None:  # as vLLM: long prompts fail, long answers are cut
            room = self.max_model_len - len(prompt_ids)
            if room <= 0:
                raise ValueError(f"prompt of {len(prompt_ids)} tokens leaves no room in "
                                 f"max_model_len={self.max_model_len}")
            if sampling.max_new_tokens > room:
                sampling = replace(sampling, max_new_tokens=room)
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put(_Request(list(prompt_ids), sampling, future))
        return await asyncio.wrap_future(future)

    def _serve(self) -> None:
        """The serving thread: take a batch of whatever is queued, run it, repeat until ``None``."""
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, deadline = [first], time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            # A caller that was cancelled while queued is dropped; the rest can no longer cancel.
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                with self._lock:
                    results = self._generate_batch(batch)
            except Exception as error:  # hand the failure to every caller of this batch
                for request in batch:
                    request.future.set_exception(error)
                continue
            for request, result in zip(batch, results):
                request.future.set_result(result)
        while not self._queue.empty():  # fail whatever arrived after the stop
            item = self._queue.get_nowait()
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(RuntimeError("TransformersEngine was shut down"))

    @torch.inference_mode()
    def _generate_batch(self, batch: list[_Request]) -> list[Generation]:
        n, width = len(batch), max(len(r.prompt_ids) for r in batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, request in enumerate(batch):  # left padding: every row's next token is at the end
            ids[i, width - len(request.prompt_ids):] = torch.tensor(request.prompt_ids)
            mask[i, width - len(request.prompt_ids):] = 1
        temperature = torch.tensor([r.sampling.temperature for r in batch], dtype=torch.float32)
        top_p = torch.tensor([r.sampling.top_p for r in batch], dtype=torch.float32)
        min_p = torch.tensor([r.sampling.min_p for r in batch], dtype=torch.float32)
        top_k = torch.tensor([r.sampling.top_k for r in batch], dtype=torch.long)
        allowed = [r.sampling.allowed_token_ids for r in batch]
        blocked = None  # built at the first step, when the logits' width (the vocabulary) is known
        rngs = [torch.Generator().manual_seed(r.sampling.seed) if r.sampling.seed is not None
                else self._rng for r in batch]
        limits = [r.sampling.max_new_tokens for r in batch]
        tokens: list[list[int]] = [[] for _ in batch]
        logprobs: list[list[float]] = [[] for _ in batch]
        finish = ["length"] * n
        done = [limit <= 0 for limit in limits]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        mask, ids, positions = mask.to(self.device), ids.to(self.device), positions.to(self.device)
        past = None
        while not all(done):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             past_key_values=past, use_cache=True, logits_to_keep=1)
            self.forward_passes += 1
            past = out.past_key_values
            logits = out.logits[:, -1].float().cpu()
            if blocked is None and any(allowed):
                blocked = allowed_mask(allowed, logits.shape[-1])
            logp = sampling_logprobs(logits, temperature, top_p, min_p, top_k, blocked)
            chosen = self._pick(logp, temperature, rngs)
            for i in range(n):
                if done[i]:
                    continue
                tokens[i].append(chosen[i])
                logprobs[i].append(float(logp[i, chosen[i]]))
                if chosen[i] in self.eos_ids or self._stopped(tokens[i], batch[i].sampling.stop):
                    done[i], finish[i] = True, "stop"
                elif len(tokens[i]) >= limits[i]:
                    done[i] = True
            # Finished rows keep decoding a token nobody reads; cheaper than reshaping the cache.
            ids = torch.tensor(chosen, device=self.device).unsqueeze(1)
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=1)
            positions = positions[:, -1:] + 1
        self.batches_run += 1
        self.requests_served += n
        return [Generation(token_ids=t, logprobs=lp, finish_reason=f,
                           text=self.tokenizer.decode(t, skip_special_tokens=True))
                for t, lp, f in zip(tokens, logprobs, finish)]

    def _stopped(self, tokens: list[int], stop: tuple[str, ...]) -> bool:
        """Whether the text now ends a stop string (as vLLM: the string stays in the text). Only
        the last few tokens are decoded: an earlier match would have stopped generation then."""
        if not stop:
            return False
        tail = self.tokenizer.decode(tokens[-STOP_WINDOW:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    @staticmethod
    def _pick(logp: torch.Tensor, temperature: torch.Tensor, rngs: list[torch.Generator]) -> list[int]:
        """Argmax for greedy rows, a draw from ``exp(logp)`` (with the row's generator) otherwise."""
        picks = logp.argmax(-1).tolist()
        for i, rng in enumerate(rngs):
            if temperature[i] > 0:
                picks[i] = int(torch.multinomial(logp[i].exp(), 1, generator=rng))
        return picks

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """Copy new weights (Hugging Face names) into the live parameters, in place, between batches.
        Blocks while a batch is running. Unknown names raise; missing ones keep their values."""
        start = time.perf_counter()
        nbytes = 0
        with self._lock, torch.no_grad():
            targets = self.model.state_dict(keep_vars=True)  # tied names included
            self._drop_adapter(targets)  # full weights replace the model: no adapter on top
            for name, tensor in named_tensors:
                if name not in targets:
                    raise KeyError(f"update_weights: {name!r} is not a weight of {self.model_path}")
                targets[name].data.copy_(tensor)
                nbytes += tensor.numel() * tensor.element_size()
        total = time.perf_counter() - start
        return {names.SYNC_TOTAL_S: total, names.SYNC_LOAD_S: total, names.SYNC_SERIALIZE_S: 0.0,
                names.SYNC_MB: nbytes / 1e6, names.SYNC_MB_PER_S: nbytes / 1e6 / max(total, 1e-9)}

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter != self.adapter_name:
            raise ValueError(f"adapter {adapter!r}: the transformers engine serves one adapter, "
                             f"{self.adapter_name!r}")

    def load_adapter(self, path: str, version: int, name: str = DEFAULT_POLICY) -> dict[str, float]:
        """Merge the PEFT adapter folder ``path`` into the base weights, replacing the previous
        adapter; blocks while a batch is running. Returns ``sync/load_s`` and ``sync/mb``.
        ``name`` must be the engine's one adapter name."""
        from selfplay.core.lora_format import folder_bytes, merged_weights, read_adapter

        self._check_adapter(name)
        start = time.perf_counter()
        pairs = read_adapter(path)  # read before taking the lock: generation goes on meanwhile
        with self._lock, torch.no_grad():
            targets = self.model.state_dict(keep_vars=True)
            old_base = self._lora_base
            # The base of each layer this adapter changes: the copy kept while an earlier adapter
            # changed it, else its live weight (copied: it is about to be overwritten).
            base = {name: old_base[name] if name in old_base else targets[name].detach().clone()
                    for name in {p.weight_name for p in pairs} if name in targets}
            merged = merged_weights(base, pairs)  # raises on a name the model lacks
            for name, weight in old_base.items():  # layers only the previous adapter changed
                if name not in base:
                    targets[name].data.copy_(weight)
            for name, weight in merged.items():
                targets[name].data.copy_(weight)
            self._lora_base, self.adapter_version = base, version
        return {names.SYNC_LOAD_S: time.perf_counter() - start, names.SYNC_MB: folder_bytes(path) / 1e6}

    def _drop_adapter(self, targets: dict[str, torch.Tensor]) -> None:
        """Put the base weights back and forget them (lock held)."""
        for name, weight in self._lora_base.items():
            targets[name].data.copy_(weight)
        self._lora_base.clear()
        self.adapter_version = None

    def update_weights_from_file(self, path: str) -> dict[str, float]:
        """Load new weights from a safetensors file."""
        from selfplay.core.weight_format import iter_safetensors

        return self.update_weights(iter_safetensors(path))

    def shutdown(self) -> None:
        """Stop the serving thread (after the batch in progress); later requests fail."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None
