"""The vLLM generation engine: an ``AsyncLLM`` behind the :class:`actors.engine.Engine` interface.

**Its own event loop.** The ``AsyncLLM`` lives on a private event loop in a daemon thread, and
every call crosses to it with ``run_coroutine_threadsafe``. This is why ``generate`` can be awaited
from any loop (a Ray async actor's, each test's) and why ``update_weights`` can be the plain
blocking method the interface asks for, even when called from inside a running loop: an
``AsyncLLM`` is bound to the loop it first ran on, and a blocking call on that same loop would
deadlock. Only whole requests cross threads, never per-token outputs.

**Log-probs.** The engine runs with ``logprobs_mode="processed_logprobs"``: the log-prob of each
sampled token under the distribution it was actually drawn from, i.e. after temperature scaling and
min-p, top-k and top-p truncation (renormalised over what they keep; training uses none of them).
vLLM's default, ``raw_logprobs``, reports the untempered model distribution, which is not the
behaviour policy when temperature != 1. Greedy requests (temperature 0) report the untempered
log-softmax.

**Weight updates** (the learner's end: :mod:`learners.weight_publisher`): ``weight_sync="cpu"`` writes the tensors once
into ``/dev/shm`` and the worker reloads from a memory map (only the path crosses processes);
``weight_sync="nccl"`` builds the engine with ``WeightTransferConfig(backend="nccl")`` and takes
new weights from the learner through :meth:`VLLMEngine.weight_transfer`. Either way generation is
paused around the swap (in-flight requests are kept) and the prefix cache is reset, since cached
KV blocks were computed by the old weights.

**LoRA adapters** (``EngineSettings.lora_rank > 0``, ``trainer.lora``): the engine is built with
vLLM's LoRA support and :meth:`VLLMEngine.load_adapter` adds the learner's adapter folder as a
``LoRARequest`` that every later request carries; the base weights never change. Requests in
flight keep the adapter they started with, so the newest ``max_loras`` adapters stay loaded and an
older one is removed once its last request has finished. No pause and no prefix-cache reset: vLLM
keys cached KV blocks by adapter, and each weight version is an adapter of its own.

**Several adapters** (``EngineSettings.adapters``, one per policy of ``policies:``): each name has
its own current ``LoRARequest`` and its own newest ``max_loras`` versions; a request names the
adapter it runs with (``generate(..., adapter=name)``; no name: ``default``, the one shared
policy, where the engine serves it, else the base weights) and vLLM batches requests of different
adapters together (multi-LoRA: room for ``max_loras * len(adapters)`` of them in one batch).
Each (name, version) has an id of its own, the same every time it is loaded.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import os
import threading
import time
import uuid
from typing import Any, Coroutine, Iterable, TypeVar

import torch

from actors.engine import EngineSettings, Generation, SamplingSettings
from selfplay.core import metric_names as names
from selfplay.core.policies import DEFAULT_POLICY
from selfplay.core.precision import local_device, resolve_dtype
from selfplay.core.weight_format import resolve_weight_sync, shm_path, write_safetensors

T = TypeVar("T")
LOGPROBS_MODE = "processed_logprobs"
SHUTDOWN_GRACE_S = 30.0


def sampling_params(sampling: SamplingSettings) -> Any:
    """vLLM ``SamplingParams`` for one request, asking for the sampled token's log-prob only."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    greedy = sampling.temperature <= 0
    return SamplingParams(
        max_tokens=sampling.max_new_tokens, temperature=0.0 if greedy else sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p, min_p=0.0 if greedy else sampling.min_p,
        top_k=0 if greedy else sampling.top_k, seed=sampling.seed,
        stop=list(sampling.stop) or None, include_stop_str_in_output=True,
        # A logits mask applied before temperature and sampling, so processed_logprobs are the
        # renormalised log-probs the learner recomputes (learners.chunked_head).
        allowed_token_ids=list(sampling.allowed_token_ids) or None,
        logprobs=0,  # 0 top-k alternatives: just the sampled token's own log-prob
        output_kind=RequestOutputKind.FINAL_ONLY)  # no per-token streaming back to us


def vllm_lora_rank(rank: int) -> int:
    """The smallest adapter rank vLLM reserves room for (``max_lora_rank``: a fixed set of sizes)
    that holds adapters of rank ``rank``."""
    from typing import get_args

    from vllm.config.lora import MaxLoRARanks

    fits = [r for r in get_args(MaxLoRARanks) if r >= rank]
    if not fits:
        raise ValueError(f"LoRA rank {rank}: vLLM serves adapters up to rank {max(get_args(MaxLoRARanks))}")
    return min(fits)


def lora_id(adapters: tuple[str, ...], name: str, version: int) -> int:
    """vLLM's ``lora_int_id`` of version ``version`` of adapter ``name``: positive (0 means no
    adapter to vLLM), distinct for every (name, version), and the same each time that pair is
    loaded, so the prefix cache (keyed by adapter) never mixes two versions or two adapters.
    With one adapter it is ``version + 1``."""
    return version * len(adapters) + adapters.index(name) + 1


def lora_name(adapters: tuple[str, ...], name: str, version: int) -> str:
    """vLLM's ``lora_name`` of that pair: ``v<version>``, prefixed by the adapter's name when the
    engine serves several. It must not repeat either: vLLM keys cached KV blocks by the adapter's
    name and path."""
    return f"v{version}" if len(adapters) == 1 else f"{name}-v{version}"


def sampled_logprobs(token_ids: Iterable[int], logprobs: Any) -> list[float]:
    """The log-prob of each sampled token from vLLM's per-position ``{token: Logprob}`` output."""
    return [float(position[token].logprob) for token, position in zip(token_ids, logprobs)]


class VLLMEngine:
    """A vLLM ``AsyncLLM`` for rollouts. Construct cheaply, then ``await init()``."""

    def __init__(self, model_path: str, settings: EngineSettings | None = None) -> None:
        self.model_path = model_path
        self.settings = settings = settings or EngineSettings()
        # "auto" is ours, not vLLM's (which would take the checkpoint's dtype): bf16 only where the
        # hardware computes it natively.
        self.dtype, self.dtype_reason = resolve_dtype(settings.dtype, local_device())
        self.weight_sync = resolve_weight_sync(settings.weight_sync)
        self.tokenizer: Any = None
        self._llm: Any = None
        self._weight_dtype: torch.dtype | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        if not settings.adapters or len(set(settings.adapters)) != len(settings.adapters):
            raise ValueError(f"EngineSettings.adapters={settings.adapters!r}: expected distinct names")
        # LoRA state, touched on the engine's loop only (so no lock): per adapter name, the
        # request new requests get and the ids vLLM holds (oldest first); requests running per id,
        # and the ids past their name's newest max_loras that wait for their last request before
        # being removed.
        self._lora_current: dict[str, Any] = {}
        self._lora_ids: dict[str, list[int]] = {name: [] for name in settings.adapters}
        self._lora_running: collections.Counter[int] = collections.Counter()
        self._lora_retired: set[int] = set()
        self._lora_tasks: set[asyncio.Task] = set()

    # -- set-up and the bridge to the engine's loop ---------------------------------------------

    def engine_args(self) -> Any:
        """The ``AsyncEngineArgs`` this engine is built from."""
        from vllm.engine.arg_utils import AsyncEngineArgs

        s = self.settings
        extra: dict[str, Any] = {}
        if torch.cuda.is_available():
            extra["gpu_memory_utilization"] = s.gpu_memory_utilization
        if s.max_num_seqs is not None:
            extra["max_num_seqs"] = s.max_num_seqs
        if s.max_model_len is not None:
            extra["max_model_len"] = s.max_model_len
        if s.tensor_parallel_size > 1:
            # The worker's Ray actor already holds these GPUs: vLLM's own processes use them, rather
            # than vLLM asking Ray for a placement group of its own inside ours.
            extra.update(tensor_parallel_size=s.tensor_parallel_size, distributed_executor_backend="mp")
        if s.lora_rank > 0:
            # Every kept version of every adapter may be in one batch. One spare CPU slot per
            # adapter: a new version loads while that adapter's oldest still finishes requests.
            n = len(s.adapters)
            extra.update(enable_lora=True, max_lora_rank=vllm_lora_rank(s.lora_rank),
                         max_loras=s.max_loras * n, max_cpu_loras=(s.max_loras + 1) * n)
        if self.weight_sync == "nccl":
            from vllm.config import WeightTransferConfig

            extra["weight_transfer_config"] = WeightTransferConfig(backend="nccl")
        return AsyncEngineArgs(
            model=self.model_path, dtype=self.dtype, seed=s.seed, enforce_eager=s.enforce_eager,
            enable_prefix_caching=s.enable_prefix_caching, logprobs_mode=LOGPROBS_MODE,
            worker_extension_cls=s.worker_extension, disable_log_stats=True, **extra)

    async def init(self) -> "VLLMEngine":
        """Start the engine (tens of seconds on CPU); returns ``self``."""
        from transformers import AutoTokenizer

        if not torch.cuda.is_available():
            # Read by the spawned EngineCore process at start-up; vLLM takes whole GiB.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(self.settings.kv_cache_gib)))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop",
                                        daemon=True)
        self._thread.start()
        try:
            await self._on_loop(self._build())
        except BaseException:
            self.shutdown()  # do not leave the loop thread behind a failed start
            raise
        return self

    async def _build(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        self._llm = AsyncLLM.from_engine_args(self.engine_args())
        self._weight_dtype = self._llm.model_config.dtype  # "auto" resolved: what updates are cast to

    def _submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        if self._loop is None:
            coro.close()
            raise RuntimeError("VLLMEngine.init() must be awaited first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and await it from the caller's loop. Cancelling the
        caller cancels it there too (``AsyncLLM.generate`` then aborts the request)."""
        return await asyncio.wrap_future(self._submit(coro))

    def _blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the engine's loop and block this thread until it is done."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking engine call from the engine's own loop would deadlock")
        return self._submit(coro).result()

    # -- generation --------------------------------------------------------------------------------

    async def generate(self, prompt_ids: list[int], sampling: SamplingSettings,
                       adapter: str | None = None) -> Generation:
        """Sample one response to ``prompt_ids`` with the newest version of adapter ``adapter``
        (the base weights until one is loaded under that name; None: the ``default`` adapter, the
        one shared policy, if the engine serves that name, else the base); concurrent calls share
        the engine's batches, whatever their adapters."""
        name = self._adapter_name(adapter)
        return await self._on_loop(self._generate(list(prompt_ids), sampling, name))

    def _adapter_name(self, adapter: str | None) -> str | None:
        """The adapter name a request runs with (None: the base weights); refuses unknown names.
        No name: :data:`DEFAULT_POLICY` where the engine serves it, else the base."""
        adapters = self.settings.adapters
        if adapter is None:
            return DEFAULT_POLICY if DEFAULT_POLICY in adapters else None
        if adapter not in adapters:
            raise ValueError(f"adapter {adapter!r}: this engine serves {', '.join(adapters)}")
        return adapter

    async def _generate(self, prompt_ids: list[int], sampling: SamplingSettings,
                        adapter: str | None) -> Generation:
        from vllm.inputs import TokensPrompt

        # This request's adapter version to its end, whatever arrives meanwhile.
        lora = self._lora_current.get(adapter) if adapter is not None else None
        if lora is not None:
            self._lora_running[lora.lora_int_id] += 1
        final = None
        try:
            async for output in self._llm.generate(TokensPrompt(prompt_token_ids=prompt_ids),
                                                   sampling_params(sampling), request_id=uuid.uuid4().hex,
                                                   lora_request=lora):
                final = output
        finally:
            if lora is not None:
                self._release_lora(lora.lora_int_id)
        assert final is not None, "vLLM finished a request without any output"
        out = final.outputs[0]
        token_ids = list(out.token_ids)
        return Generation(token_ids=token_ids, logprobs=sampled_logprobs(token_ids, out.logprobs),
                          text=out.text, finish_reason=str(out.finish_reason))

    # -- LoRA adapters -----------------------------------------------------------------------------

    def load_adapter(self, path: str, version: int, name: str = DEFAULT_POLICY) -> dict[str, float]:
        """Serve every later request for adapter ``name`` with the PEFT adapter folder ``path``
        (weight version ``version``, on this node); returns ``sync/load_s``. vLLM reads the folder
        now, and again only if it has to reload the adapter, so the folder should outlive its
        requests. The other adapters' requests are not affected."""
        from vllm.lora.request import LoRARequest

        adapters = self.settings.adapters
        if self.settings.lora_rank <= 0:
            raise RuntimeError("load_adapter: the engine was built without LoRA (EngineSettings.lora_rank=0)")
        if name not in adapters:
            raise ValueError(f"load_adapter: adapter {name!r}: this engine serves {', '.join(adapters)}")
        if self._llm is None:
            raise RuntimeError("VLLMEngine.init() must be awaited first")
        start = time.perf_counter()
        request = LoRARequest(lora_name=lora_name(adapters, name, version),
                              lora_int_id=lora_id(adapters, name, version), lora_path=path)
        self._blocking(self._load_adapter(request, name))
        return {names.SYNC_LOAD_S: time.perf_counter() - start}

    async def _load_adapter(self, request: Any, name: str | None = None) -> None:
        """Make ``request`` adapter ``name``'s current version (None: the engine's first adapter)
        and retire that name's versions past the newest ``max_loras``."""
        name = self.settings.adapters[0] if name is None else name
        if not await self._llm.add_lora(request):  # loads and checks the folder now
            raise RuntimeError(f"vLLM did not load the LoRA adapter at {request.lora_path}")
        self._lora_current[name] = request
        loaded = self._lora_ids.setdefault(name, [])
        new_id = request.lora_int_id
        if new_id in loaded:  # the same version again (a worker restarted mid-publish)
            loaded.remove(new_id)
        loaded.append(new_id)
        self._lora_retired.discard(new_id)
        while len(loaded) > self.settings.max_loras:  # per name: one adapter never evicts another
            old = loaded.pop(0)
            if self._lora_running[old]:
                self._lora_retired.add(old)  # removed by its last request (_release_lora)
            else:
                await self._llm.remove_lora(old)

    def _release_lora(self, lora_id: int) -> None:
        """A request with adapter ``lora_id`` has ended: remove a retired adapter after its last."""
        self._lora_running[lora_id] -= 1
        if self._lora_running[lora_id] > 0:
            return
        del self._lora_running[lora_id]
        if lora_id in self._lora_retired and self._llm is not None:
            self._lora_retired.discard(lora_id)
            # A task, not an await: this runs in a finally that may be unwinding a cancellation.
            task = asyncio.ensure_future(self._llm.remove_lora(lora_id))
            self._lora_tasks.add(task)
            task.add_done_callback(self._lora_tasks.discard)

    async def loaded_adapters(self) -> set[int]:
        """The adapter ids vLLM holds now (tests)."""
        return set(await self._on_loop(self._llm.list_loras()))

    # -- weight updates: the cpu path --------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
        """Load new weights (Hugging Face names) through a RAM file; returns timing figures."""
        self._check_cpu_sync()
        start = time.perf_counter()
        path = shm_path()
        try:
            nbytes = write_safetensors(path, named_tensors, dtype=self._weight_dtype)
            written = time.perf_counter()
            figures = self.update_weights_from_file(path)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        total = time.perf_counter() - start
        figures.update({names.SYNC_TOTAL_S: total, names.SYNC_SERIALIZE_S: written - start,
                        names.SYNC_MB: nbytes / 1e6, names.SYNC_MB_PER_S: nbytes / 1e6 / total})
        return figures

    def update_weights_from_file(self, path: str) -> dict[str, float]:
        """Load new weights from a safetensors file on this node (no copy on the way in): a learner
        on the same node can write the file itself and pass only its path."""
        self._check_cpu_sync()
        start = time.perf_counter()
        worker_s = self._blocking(self._swap("selfplay_reload_from_file", path))
        return {names.SYNC_LOAD_S: time.perf_counter() - start, names.SYNC_WORKER_RELOAD_S: max(worker_s)}

    def _check_cpu_sync(self) -> None:
        if self.weight_sync == "nccl":
            raise RuntimeError("weight_sync='nccl': weights arrive from the learner's "
                               "NCCLTrainerWeightTransferEngine through weight_transfer()")
        if self._llm is None:
            raise RuntimeError("VLLMEngine.init() must be awaited first")

    async def _swap(self, method: str, *args: Any) -> list[float]:
        """Pause (keeping in-flight requests), run a worker method, drop stale KV, resume."""
        await self._llm.pause_generation(mode="keep", clear_cache=False)
        try:
            result = await self._llm.collective_rpc(method, args=args)
            await self._reset_prefix_cache()
        finally:
            await self._llm.resume_generation()
        return result

    async def _reset_prefix_cache(self) -> None:
        """Drop KV blocks computed by the old weights; a failed reset would silently serve them."""
        if not await self._llm.reset_prefix_cache(reset_running_requests=True):
            raise RuntimeError("vLLM did not reset its prefix cache after a weight update")

    def rpc(self, method: str, *args: Any) -> list[Any]:
        """Call a worker(-extension) method on every worker and wait (benchmarks, tests)."""
        return self._blocking(self._llm.collective_rpc(method, args=args))

    async def reset_prefix_cache(self) -> bool:
        """Drop cached KV blocks (done after every update already)."""
        return await self._on_loop(self._llm.reset_prefix_cache())

    # -- weight updates: the nccl path (vLLM's weight-transfer API) --------------------------------

    async def weight_transfer(self, method: str, payload: dict[str, Any] | None = None) -> None:
        """One call of vLLM's weight-sync control plane, as issued by vLLM's trainer engine through
        :class:`learners.weight_publisher.EngineWeightSyncClient`: ``init_weight_transfer_engine`` (once),
        then each round ``start_weight_update``, ``update_weights``, ``finish_weight_update``."""
        await self._on_loop(self._weight_transfer(method, payload))

    async def _weight_transfer(self, method: str, payload: dict[str, Any] | None) -> None:
        from vllm.distributed.weight_transfer.base import (WeightTransferInitRequest,
                                                           WeightTransferUpdateRequest)

        llm = self._llm
        if method == "init_weight_transfer_engine":
            await llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=payload or {}))
        elif method in ("start_weight_update", "update_weights"):
            try:
                if method == "start_weight_update":
                    await llm.pause_generation(mode="keep", clear_cache=False)
                    await llm.start_weight_update()
                else:
                    await llm.update_weights(WeightTransferUpdateRequest(update_info=payload or {}))
            except BaseException:
                # The trainer sends no finish_weight_update after a failure: resume here, or
                # every later generate() would wait on a paused engine forever.
                await llm.resume_generation()
                raise
        elif method == "finish_weight_update":
            try:
                await llm.finish_weight_update()
                await self._reset_prefix_cache()
            finally:
                await llm.resume_generation()
        else:
            raise ValueError(f"unknown weight-transfer call {method!r}")

    # -- teardown ----------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm.output_handler is not None:
            llm.output_handler.cancel()
        # A longer grace than vLLM's 5 s: on a busy CPU the EngineCore is otherwise SIGKILLed
        # mid-teardown, leaking its shared-memory ring buffer (~160 MB in /dev/shm) each time.
        llm.shutdown(timeout=SHUTDOWN_GRACE_S)

    def shutdown(self) -> None:
        """Stop the EngineCore process and the engine's loop thread."""
        if self._llm is not None and self._thread is not None and self._thread.is_alive():
            # On the engine's loop, so the output handler task is cancelled before it can see
            # the engine process go away (and log that as a failure).
            self._blocking(self._shutdown())
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
        self._loop = self._thread = None
