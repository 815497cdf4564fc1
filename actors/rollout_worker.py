"""The rollout worker: one generation engine, many concurrent episodes.

A plain class; Ray wraps it at the edge (``ray.remote(RolloutWorker)``), where its async methods
make it an async actor whose calls interleave on one event loop. Heavy set-up (building the
engine) happens in ``init()``, not in the constructor, so creating the actor is instant and
failures surface from a call that can report them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from actors.engine import Engine, EngineSettings, SamplingSettings, make_engine
from actors.episodes import DecisionPoint, EpisodeLimits, EpisodeRunner, sample_replies
from actors.schedule import eval_sampling, plan_evaluation, plan_training, train_sampling
from envs import num_players
from selfplay.core import metric_names as names
from selfplay.core.cores import format_cores, pin
from selfplay.core.config_schema import EnvConfig, EvalConfig, LoraConfig, PolicyConfig, RolloutConfig
from selfplay.core.policies import DEFAULT_POLICY, policy_names, role_adapters
from selfplay.core.samples import INITIAL, SELF, SNAPSHOT, Episode

log = logging.getLogger(__name__)


def engine_settings(rollout: RolloutConfig, seed: int = 0, tensor_parallel_size: int = 1,
                    lora: LoraConfig | None = None, max_loras: int = 1,
                    policies: Sequence[PolicyConfig] = ()) -> EngineSettings:
    """The engine a rollout config asks for; its context holds the prompt budget plus the answer's.
    With ``lora`` (``trainer.lora``, rank > 0) it serves adapters of that rank, the newest
    ``max_loras`` versions of each at once (``trainer.max_staleness + 1``): one adapter per policy
    of ``policies`` (``default`` without them)."""
    return EngineSettings(dtype=rollout.dtype, seed=seed, tensor_parallel_size=tensor_parallel_size,
                          max_model_len=rollout.max_prompt_tokens + rollout.max_new_tokens,
                          kv_cache_gib=rollout.kv_cache_gib, weight_sync=rollout.weight_sync,
                          gpu_memory_utilization=rollout.gpu_memory_utilization,
                          enforce_eager=rollout.enforce_eager,
                          lora_rank=lora.rank if lora is not None else 0, max_loras=max_loras,
                          adapters=tuple(policy_names(policies)))


def episode_limits(rollout: RolloutConfig) -> EpisodeLimits:
    return EpisodeLimits(max_turns=rollout.max_turns, max_prompt_tokens=rollout.max_prompt_tokens,
                         timeout_s=rollout.episode_timeout_s, truncated_return=rollout.truncated_return)


def summarize(episodes: list[Episode]) -> list[Episode]:
    """The episodes without their samples and transcripts: what the driver needs for metrics."""
    return [e.summary() for e in episodes]


class RolloutWorker:
    """Hosts one engine and plays training and evaluation episodes with it."""

    def __init__(self, model_path: str, rollout: RolloutConfig, envs: list[EnvConfig],
                 evaluation: EvalConfig, seed: int = 0, index: int = 0, tensor_parallel_size: int = 1,
                 cores: list[int] | None = None, lora: LoraConfig | None = None,
                 max_loras: int = 1, policies: Sequence[PolicyConfig] = ()) -> None:
        self.model_path = model_path
        #: The CPU cores this worker and its engine process run on (``cluster.worker_cores``).
        self.cores = cores
        self.rollout, self.envs, self.evaluation = rollout, envs, evaluation
        self.seed, self.index, self.tensor_parallel_size = seed, index, tensor_parallel_size
        self.engine: Engine | None = None
        self.runner: EpisodeRunner | None = None
        #: Engines of the pool's frozen snapshots, by name (:meth:`sync_snapshots` keeps it equal).
        self.snapshots: dict[str, Engine] = {}
        #: The learner's step whose weights the engine holds: 0 is the model folder as loaded; each
        #: publish sets it. Reported with every batch, so the driver can refuse stale samples.
        self.weight_version = 0
        #: ``trainer.lora`` when the learner publishes LoRA adapters (rank > 0), and how many of
        #: them the engine keeps loaded (``trainer.max_staleness + 1``).
        self.lora, self.max_loras = lora, max_loras
        #: The run's policies (``policies:``), each an adapter of the engine; () for one policy.
        self.policies = list(policies)
        #: This worker's copies of adapters that came through the object store, oldest first.
        self._adapter_folders: list[str] = []

    async def init(self) -> dict[str, float]:
        """Build the engine; returns its start-up time."""
        start = time.perf_counter()
        if self.cores:
            # Before the engine starts: vLLM's processes inherit the affinity and bind their
            # compute threads to exactly these cores; torch (the transformers engine) uses as many.
            pin(self.cores)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = format_cores(self.cores)
            torch.set_num_threads(len(self.cores))
        self.engine = await make_engine(self.rollout.backend, self.model_path,
                                        engine_settings(self.rollout, self.seed + self.index,
                                                        self.tensor_parallel_size, self.lora,
                                                        self.max_loras, self.policies))
        self.runner = EpisodeRunner(self.engine, self.engine.tokenizer, episode_limits(self.rollout),
                                    opponent_engines=self.snapshots, version=lambda: self.weight_version)
        seconds = time.perf_counter() - start
        log.info("worker %d: %s engine ready in %.1f s, %s (%s) (pid %d)", self.index,
                 self.rollout.backend, seconds, self.engine.dtype, self.engine.dtype_reason, os.getpid())
        return {names.ENGINE_START_S: seconds}

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("RolloutWorker.init() must be awaited before using the engine")
        return self.engine

    def _runner(self) -> EpisodeRunner:
        if self.runner is None:
            raise RuntimeError("RolloutWorker.init() must be awaited before playing episodes")
        return self.runner

    async def collect(self, count: int, step: int, level_options: dict[str, dict[str, Any]] | None = None,
                      frozen: list[str] | None = None) -> tuple[list[Episode], list[Episode], dict[str, float]]:
        """Play ``count`` training episodes concurrently (environments with a curriculum at the
        level ``level_options`` names; ``snapshot`` opponents drawn from ``frozen``, the pool's
        snapshots when the driver planned the step, else every snapshot hosted here). Returns
        them, their summaries (no samples or transcripts) and throughput figures; the driver asks
        for three return values, so the full episodes stay in the object store on their way to
        the learner."""
        start, version, began = time.perf_counter(), self.weight_version, time.time()
        specs = plan_training(self.envs, self.rollout, self.seed, count, step, self.index, level_options,
                              policies=self.policies)
        rng = np.random.default_rng([self.seed, step, self.index, 1])
        if frozen is None:
            frozen = sorted(n for n in self.snapshots if n != INITIAL)  # INITIAL: evaluation only
        for spec in specs:  # "snapshot" means any frozen snapshot; self-play until one exists
            if spec.opponent == SNAPSHOT:
                if frozen:
                    spec.opponent = str(rng.choice(frozen))
                else:
                    spec.opponent, spec.policy_roles = SELF, list(range(num_players(spec.env_id)))
        episodes = await self._runner().run_many(specs)
        seconds = time.perf_counter() - start
        tokens = sum(e.generated_tokens for e in episodes)
        return episodes, summarize(episodes), {
            names.ROLLOUT_S: seconds, names.ROLLOUT_TOKENS: float(tokens),
            names.ROLLOUT_TOKENS_PER_S: tokens / max(seconds, 1e-9),
            # -1 if new weights arrived mid-batch: its episodes mix two policies.
            names.WEIGHT_VERSION: float(version if version == self.weight_version else -1),
            # For the asynchronous loop: the oldest weights of the batch, and when it ran
            # (wall clock, to measure each side's idle time across overlapping calls).
            names.BATCH_VERSION: float(version), names.BATCH_START: began, names.BATCH_END: time.time()}

    async def evaluate(self, env_ids: list[str], opponents: list[str], games: int, seed: int = 0,
                       options: dict[str, Any] | None = None, repeats: int = 1) -> list[Episode]:
        """Play ``games`` evaluation problems per (environment, opponent, role), each ``repeats``
        times, reset with ``options`` (a level) if given."""
        specs = plan_evaluation(self.envs, env_ids, opponents, games, seed,
                                eval_sampling(self.rollout, self.evaluation), options, repeats,
                                policies=self.policies)
        return await self._runner().run_many(specs)

    async def evaluate_bench(self, name: str, env_kwargs: dict[str, Any], indices: list[int], samples: int,
                             seed: int = 0) -> list[dict[str, Any]]:
        """Answer problems ``indices`` of a benchmark (``selfplay/QA-v0`` with ``env_kwargs``)
        ``samples`` times each, all at once; one record per answer (:mod:`actors.bench_run`)."""
        from actors.bench_run import bench_sampling, plan_bench, run_bench

        sampling = bench_sampling(eval_sampling(self.rollout, self.evaluation), samples)
        specs = plan_bench(name, env_kwargs, indices, samples, sampling, seed)
        return await run_bench(self._runner(), specs, f"{name} (worker {self.index})")

    async def sample_replies(self, env_id: str, points: dict[str, DecisionPoint], n: int
                             ) -> dict[str, list[str | None]]:
        """``n`` replies at each decision point, sampled as in training (the training temperature
        and token limit, the configured environment's keyword arguments, each role's adapter): the
        played policy, for evaluations such as the sampled Kuhn Poker exploitability."""
        kwargs = next((dict(e.kwargs) for e in self.envs if e.id == env_id), {})
        # With several policies each role is answered by the adapter that plays it in self-play.
        adapters = role_adapters(self.policies, range(num_players(env_id)), SELF)
        return await sample_replies(self._engine(), self._engine().tokenizer, train_sampling(self.rollout),
                                    self.rollout.max_prompt_tokens, env_id, kwargs, points, n,
                                    adapters=adapters or None)

    async def sync_snapshots(self, wanted: dict[str, str]) -> None:
        """Host exactly the snapshots ``{name: folder}`` as opponents: load the new ones, free the
        evicted ones. Snapshots run on the transformers engine: an opponent needs no log-probs and
        little throughput."""
        for name in [n for n in self.snapshots if n not in wanted]:
            self.snapshots.pop(name).shutdown()
        for name, path in wanted.items():
            if name not in self.snapshots:
                self.snapshots[name] = await make_engine(
                    "transformers", path, EngineSettings(dtype=self.rollout.dtype,
                                                         seed=self.seed + self.index))

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]],
                       weight_version: int | None = None) -> dict[str, float]:
        """Load new policy weights into the engine (the object-store transport)."""
        figures = self._engine().update_weights(named_tensors)
        self._set_version(weight_version)
        return figures

    def update_weights_from_file(self, path: str, weight_version: int | None = None) -> dict[str, float]:
        """Load new weights from a weights file on this node (the RAM-file transport)."""
        figures = self._engine().update_weights_from_file(path)
        self._set_version(weight_version)
        return figures

    def update_adapter_from_folder(self, path: str, weight_version: int) -> dict[str, float]:
        """Serve the policy's LoRA adapter of ``weight_version`` from now on: a PEFT folder the
        learner wrote in ``/dev/shm`` on this node (the RAM-file transport). With several policies
        the folder holds one PEFT folder per policy, ``path/<name>``; each is loaded under its
        name, all of them before the worker reports the new version. Figures are summed."""
        engine, adapters = self._engine(), policy_names(self.policies)
        if len(adapters) == 1:
            # Positional for the default name: engines (and stand-ins) of one adapter need no name.
            figures = (engine.load_adapter(path, weight_version) if adapters[0] == DEFAULT_POLICY
                       else engine.load_adapter(path, weight_version, name=adapters[0]))
        else:
            figures = {}
            for name in adapters:
                for key, value in engine.load_adapter(os.path.join(path, name), weight_version,
                                                      name=name).items():
                    figures[key] = figures.get(key, 0.0) + value
        self._set_version(weight_version)
        return figures

    def update_adapter(self, files: dict[str, bytes], weight_version: int) -> dict[str, float]:
        """The same from the adapter folder's files (the object-store transport; with several
        policies named ``<name>/<file>``): they are written into a folder of this worker's own in
        ``/dev/shm`` and loaded from there. The newest ``max_loras`` folders are kept (the
        engine's adapters; vLLM reads a folder again if it must reload one), older ones removed.
        ``sync/load_s`` includes the writing."""
        from selfplay.core.lora_format import write_folder_files
        from selfplay.core.weight_format import adapter_folder

        start = time.perf_counter()
        folder = adapter_folder(weight_version)
        try:
            write_folder_files(folder, files)
            figures = self.update_adapter_from_folder(folder, weight_version)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._adapter_folders.append(folder)
        while len(self._adapter_folders) > self.max_loras:
            shutil.rmtree(self._adapter_folders.pop(0), ignore_errors=True)
        figures[names.SYNC_LOAD_S] = time.perf_counter() - start
        return figures

    async def weight_transfer(self, method: str, payload: dict[str, Any] | None = None,
                              weight_version: int | None = None) -> None:
        """One call of vLLM's NCCL weight-sync control plane, issued by the learner."""
        await self._engine().weight_transfer(method, payload)  # type: ignore[attr-defined]
        if method == "finish_weight_update":
            self._set_version(weight_version)

    def _set_version(self, weight_version: int | None) -> None:
        if weight_version is not None:
            self.weight_version = weight_version

    def status(self) -> dict[str, Any]:
        """What the driver checks after a failed call: whether this process has its engine (an
        actor Ray restarted has run ``__init__`` again, not ``init()``), its pid and weights."""
        import ray

        return {"ready": self.engine is not None, "pid": os.getpid(), "weight_version": self.weight_version,
                "restarted": ray.get_runtime_context().was_current_actor_reconstructed}

    async def probe(self, prompt_ids: list[int], max_new_tokens: int = 4,
                    adapter: str | None = None) -> dict[str, Any]:
        """A greedy answer to ``prompt_ids`` (with adapter ``adapter``; None: the ``default``
        adapter where the engine serves it, else the base) with its log-probs and the weight version: two
        workers holding the same weights answer identically (tests, checks on a cluster)."""
        greedy = SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.0)
        engine = self._engine()
        out = await (engine.generate(prompt_ids, greedy) if adapter is None
                     else engine.generate(prompt_ids, greedy, adapter=adapter))
        return {"token_ids": out.token_ids, "logprobs": out.logprobs, "weight_version": self.weight_version}

    def node_id(self) -> str:
        """The Ray node this worker runs on (to pick the same-node weight path)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def shutdown(self) -> None:
        for engine in self.snapshots.values():
            engine.shutdown()
        self.snapshots.clear()
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
