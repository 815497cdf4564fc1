"""How much device memory one rank of the sharded learner needs, before anything starts.

Pure arithmetic on a model's ``config.json`` (no torch, no weights), so the plan runs offline and
in a dry run. The architecture configs of the recipe models ship with the package
(``learners/model_configs/<name>/config.json``); :func:`load_architecture` finds them by the
last part of a hub id (``Qwen/Qwen3-4B-Base``), or reads any folder holding a ``config.json``.

What one rank holds (P parameters, N ranks, FSDP2 as :mod:`learners.fsdp_model` sets it up):

* sharded, 1/N each: float32 master weights (4P/N bytes), float32 gradients (4P/N), AdamW's
  float32 m and v (8P/N); with a KL reference, its float32 weights too (4P/N);
* unsharded compute copies in the compute dtype: the root unit (embeddings, final norm, head),
  which stays gathered through forward and backward, and two decoder layers (the one computing
  and the next, prefetched); plus one layer's unsharded float32 gradient before its
  reduce-scatter;
* activations of one micro-batch of T tokens: without gradient checkpointing, what each layer
  saves for backward; with it, each layer's input plus one layer's recomputed activations;
* the logits of one chunk of loss tokens (``trainer.logits_chunk_tokens``, at most T): the head's
  output, the float32 logits turned log-softmax in place, the probabilities and the entropy's
  product, each ``[chunk, vocab]`` (:mod:`learners.chunked_head`; the backward pass recomputes one
  chunk at a time). Unchunked, ``[T, vocab]`` with a 152k vocabulary was the largest item;
* a fixed reserve for the CUDA context, NCCL buffers and allocator fragmentation.

With LoRA (``trainer.lora.rank`` r > 0, one rank only) the base is frozen in the compute dtype
(all P of it on the one rank) and the master weights, gradients and AdamW state are the adapter's:
L = r * (in + out) parameters for each target module of each layer (:meth:`Architecture.lora_params`),
plus the adapter's compute copy; its KL reference is the base itself (adapter disabled), no copy.
With several policies (``policies:``) each trains an adapter of its own on the one base: all of
that times the number of adapters.

Forward passes without gradient (the KL reference's; ``trainer.off_policy``'s proximal log-probs
of :mod:`learners.off_policy`) add nothing: they keep no activations for backward, so they peak
below the training pass, and what they return is one float per loss token.

Activations are an estimate (element counts of the tensors a SwiGLU/GQA decoder layer keeps, with
a fused attention kernel that keeps no ``[T, T]`` scores); the rest is exact arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from selfplay.core.config_schema import LoraConfig, TrainerConfig

__all__ = ["Architecture", "MemoryPlan", "load_architecture", "plan_memory", "shipped_config",
           "shipped_models"]

GIB = 2**30
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
#: The config field giving one learner rank's device memory.
MEMORY_FIELD = "cluster.learner_memory_gib"
#: CUDA context, NCCL buffers and allocator fragmentation: a round allowance, not a measurement.
RESERVE_GIB = 2.0
# Bytes per [token, vocab] entry of a chunk of loss positions: head output in the compute dtype
# (2), float32 logits turned log-softmax in place (4), probabilities (4), the entropy's product (4).
_LOGIT_BYTES = 14


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as its ``config.json`` gives it."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False

    @classmethod
    def from_config(cls, config: dict, name: str = "model") -> "Architecture":
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        model_type = config.get("model_type", "")
        return cls(name=name, hidden=hidden, layers=int(config["num_hidden_layers"]), heads=heads,
                   kv_heads=int(config.get("num_key_value_heads") or heads),
                   head_dim=int(config.get("head_dim") or hidden // heads),
                   intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
                   tied=bool(config.get("tie_word_embeddings", False)),
                   # Qwen2 has biases on q, k and v; Qwen3 normalises q and k per head instead.
                   qkv_bias=bool(config.get("attention_bias", model_type == "qwen2")),
                   qk_norm=model_type == "qwen3")

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: attention, SwiGLU MLP and two RMSNorms."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = self.hidden * (q + 2 * kv) + q * self.hidden
        attention += (q + 2 * kv) if self.qkv_bias else 0
        attention += 2 * self.head_dim if self.qk_norm else 0
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def root_params(self) -> int:
        """Parameters outside the decoder layers: embeddings, final norm, untied head."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params

    def projections(self) -> dict[str, tuple[int, int]]:
        """``(in, out)`` features of each linear projection of a decoder layer, by module name."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate), "down_proj": (self.intermediate, self.hidden)}

    def lora_params(self, rank: int, target_modules: list[str]) -> int:
        """Parameters of LoRA adapters of ``rank`` on ``target_modules`` of every layer: A is
        ``[r, in]`` and B ``[out, r]``, so ``r * (in + out)`` a module. A ValueError names a
        module this shape does not know."""
        shapes = self.projections()
        unknown = [m for m in target_modules if m not in shapes]
        if unknown:
            raise ValueError(f"trainer.lora.target_modules={list(target_modules)!r}: the memory plan knows "
                             f"{', '.join(shapes)}, not {', '.join(unknown)}")
        return self.layers * sum(rank * sum(shapes[m]) for m in set(target_modules))

    def layer_activation_elements(self) -> int:
        """Elements one decoder layer keeps per token for backward: both norms' inputs and
        outputs, q/k/v before and after rotary embedding, the attention output, and the MLP's
        gate, up, activation and product (4 of the intermediate size)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 4 * self.hidden + 3 * q + 4 * kv + 4 * self.intermediate


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per rank, item by item, and the device memory they must fit in."""

    title: str
    rows: tuple[tuple[str, float], ...]
    #: None: no device memory known, nothing to check against.
    device_gib: float | None
    #: Where ``device_gib`` comes from: the config field that gave it, or a measurement ("this
    #: host's RAM"); with no figure, why there is none.
    device_source: str = MEMORY_FIELD

    @property
    def total_bytes(self) -> float:
        return sum(b for _, b in self.rows)

    @property
    def fits(self) -> bool:
        return self.device_gib is None or self.total_bytes <= self.device_gib * GIB

    def table(self) -> str:
        """The plan as aligned text lines (GiB), ending with the total against the device."""
        width = max(len(label) for label, _ in self.rows) + 2
        lines = [self.title]
        lines += [f"  {label:<{width}}{b / GIB:8.2f} GiB" for label, b in self.rows]
        if self.device_gib is None:
            against = (f"(device memory not given: {MEMORY_FIELD})" if self.device_source == MEMORY_FIELD
                       else f"(not checked: {self.device_source})")
        else:
            source = "" if self.device_source == MEMORY_FIELD else f", {self.device_source}"
            against = f"of {self.device_gib:g} GiB{source} ({'fits' if self.fits else 'DOES NOT FIT'})"
        lines.append(f"  {'total':<{width}}{self.total_bytes / GIB:8.2f} GiB {against}")
        return "\n".join(lines)

    def check(self, memory_field: str = MEMORY_FIELD) -> None:
        """Raise a one-line ``ValueError`` naming the fields to change if the plan does not fit."""
        if self.fits:
            return
        needs = f"the learner needs {self.total_bytes / GIB:.1f} GiB per rank ({self.title})"
        fix = ("raise cluster.learner_ranks, lower trainer.micro_batch_tokens or set "
               "trainer.gradient_checkpointing: true")
        if self.device_source == memory_field:
            raise ValueError(f"{memory_field}={self.device_gib:g}: {needs}; {fix}")
        raise ValueError(f"{memory_field} not set: {needs}, more than the {self.device_gib:g} GiB "
                         f"of {self.device_source}; {fix} (or set {memory_field} to the memory "
                         f"the learner will have)")


def plan_memory(arch: Architecture, ranks: int, micro_batch_tokens: int,
                gradient_checkpointing: bool, device_gib: float | None, compute_dtype: str = "bfloat16",
                reference: bool = False,
                logits_chunk_tokens: int = TrainerConfig.logits_chunk_tokens,
                lora: LoraConfig | None = None, adapters: int = 1) -> MemoryPlan:
    """The memory plan of one learner rank (see the module docstring for what is counted);
    ``lora``: ``trainer.lora`` when on (rank > 0; one rank only); ``adapters``: how many LoRA
    adapters train on the one base (``policies:``, one per policy), each with its own master
    weights, gradients and AdamW state."""
    if adapters < 1:
        raise ValueError(f"adapters={adapters}: expected >= 1")
    if ranks < 1:
        raise ValueError(f"cluster.learner_ranks={ranks}: expected >= 1")
    if compute_dtype not in _DTYPE_BYTES:
        raise ValueError(f"trainer.dtype={compute_dtype!r}: expected one of {sorted(_DTYPE_BYTES)}")
    c = _DTYPE_BYTES[compute_dtype]
    p, t = arch.params, micro_batch_tokens
    if lora is not None and lora.rank > 0:
        if ranks > 1:
            raise ValueError(f"trainer.lora.rank={lora.rank}: LoRA needs cluster.learner_ranks=1")
        trainable = arch.lora_params(lora.rank, lora.target_modules) * adapters
        rows = [(f"base weights (frozen, {compute_dtype})", c * p),
                ("LoRA master weights (fp32)", 4 * trainable),
                ("LoRA gradients (fp32)", 4 * trainable),
                ("LoRA AdamW m and v (fp32)", 8 * trainable)]
        if c != 4:  # in float32 the adapter computes on its master weights directly
            rows.append((f"LoRA compute copy and its gradient ({compute_dtype})", 2 * c * trainable))
        what = (f", LoRA rank {lora.rank}: {trainable:,} trainable parameters"
                + (f" in {adapters} adapters" if adapters > 1 else ""))
    else:
        shard = f"fp32, 1/{ranks}"
        rows = [(f"master weights ({shard})", 4 * p / ranks),
                (f"gradients ({shard})", 4 * p / ranks),
                (f"AdamW m and v ({shard})", 8 * p / ranks)]
        if reference:
            rows.append((f"KL reference weights ({shard})", 4 * p / ranks))
        if ranks > 1 or c != 4:  # one fp32 rank computes on its master weights directly
            rows.append((f"compute copies ({compute_dtype}: root + 2 layers)",
                         c * (arch.root_params + 2 * arch.layer_params)))
        rows.append(("one layer's gradient before reduce-scatter (fp32)", 4 * arch.layer_params))
        what = ""
    per_layer = c * arch.layer_activation_elements() * t
    if gradient_checkpointing:
        rows.append((f"activations (checkpointed: {arch.layers} layer inputs + 1 layer)",
                     c * arch.hidden * t * arch.layers + per_layer))
    else:
        rows.append((f"activations ({arch.layers} layers)", per_layer * arch.layers))
    chunk = min(logits_chunk_tokens, t)
    rows.append((f"logits of one chunk ({chunk:,} of {t:,} loss tokens x {arch.vocab:,})",
                 _LOGIT_BYTES * chunk * arch.vocab))
    rows.append(("reserve (CUDA context, NCCL, fragmentation)", RESERVE_GIB * GIB))
    title = (f"learner memory per rank: {arch.name} ({arch.params / 1e9:.2f} B parameters{what}), "
             f"{ranks} rank{'s' if ranks > 1 else ''}, {t:,} tokens a micro-batch, gradient "
             f"checkpointing {'on' if gradient_checkpointing else 'off'}, {compute_dtype} compute")
    return MemoryPlan(title, tuple(rows), device_gib)


def shipped_models() -> list[str]:
    """Names of the architecture configs shipped with the package."""
    folder = resources.files("learners") / "model_configs"
    return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())


def shipped_config(model: str) -> dict | None:
    """The shipped ``config.json`` of ``model`` (a hub id, or its last part), parsed; None if
    selfplay ships none by that name."""
    name = model.rstrip("/").split("/")[-1]
    shipped = resources.files("learners") / "model_configs" / name / "config.json"
    return json.loads(shipped.read_text()) if name and shipped.is_file() else None


def load_architecture(model: str) -> Architecture:
    """The architecture of ``model``: a folder with a ``config.json``, a ``config.json`` file, or
    a shipped config named by a hub id's last part (``Qwen/Qwen3-4B-Base``)."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        config = shipped_config(model)
        if config is None:
            raise ValueError(f"model={model!r}: no config.json there and none shipped "
                             f"(shipped: {', '.join(shipped_models())})")
        return Architecture.from_config(config, model.rstrip("/").split("/")[-1])
    return Architecture.from_config(json.loads(path.read_text()), path.parent.name or "model")
