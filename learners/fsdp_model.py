"""A Hugging Face causal LM sharded with FSDP2 across the learner's ranks, and its weights out.

* :func:`build_sharded_policy` loads the model once (rank 0 reads the checkpoint, the other ranks
  build an empty skeleton on the ``meta`` device), ``fully_shard``s every decoder layer and the
  root, and broadcasts the weights into the shards: no rank but 0 ever holds the whole model, and
  host memory on a node holds one copy, not one per rank.
* :class:`ShardedPolicy` is the root module: its ``forward`` returns the log-probs (and entropy)
  of a micro-batch's loss tokens, the head applied a chunk of positions at a time, so FSDP's hooks
  gather the root's own parameters (embeddings, final norm, head) around exactly the code that
  uses them, and the chunks' recomputation in the backward pass runs while they are gathered.
* :func:`iter_full_weights` yields full tensors one FSDP unit (one decoder layer, or the root) at
  a time, for weight publishing and for writing the Hugging Face folder.

Precision (``MixedPrecisionPolicy``): the sharded parameters and AdamW state are float32 (the
master weights), each unit is all-gathered in the compute dtype (bf16 where the hardware has it)
for forward and backward, and gradients are reduce-scattered and accumulated in float32.
Gradients are *summed* over ranks (divide factor 1, sum-only reductions, which gloo needs): the
loss is already divided by the global token count.
"""

from __future__ import annotations

import collections
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from learners.step_parts import MicroBatch, gathered_logprobs, head_only

__all__ = ["ShardedPolicy", "build_sharded_policy", "iter_full_weights", "drain"]


class ShardedPolicy(nn.Module):
    """The FSDP root: the causal LM ``lm`` and how to read its log-probs at the loss positions."""

    def __init__(self, lm: nn.Module, temperature: float, chunk: int) -> None:
        super().__init__()
        self.lm = lm
        self.only_head = head_only(lm.config)
        self.temperature = temperature
        self.chunk = chunk

    def forward(self, ids: Tensor, attention: Tensor, rows: Tensor, cols: Tensor, targets: Tensor,
                with_entropy: bool = True, allowed_pos: Tensor | None = None,
                allowed_tok: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Float32 log-probs ``[N]`` of ``targets`` at positions ``(rows, cols)`` under the
        tempered policy, and their entropy (see :func:`learners.step_parts.gathered_logprobs`).
        Integer arguments only: FSDP casts floating-point forward inputs to the compute dtype."""
        mb = MicroBatch(ids, attention, rows, cols, targets, *[rows] * 3,  # loss fields unused
                        allowed_pos, allowed_tok)
        return gathered_logprobs(self.lm, mb, self.only_head, self.temperature, self.chunk,
                                 with_entropy)


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (Llama, Qwen2, Qwen3, Mistral: all
    keep them at ``base_model.layers``): one FSDP unit each."""
    layers = getattr(lm.base_model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(lm).__name__}: no base_model.layers to shard by decoder layer")
    return list(layers)


def build_sharded_policy(path: str, mesh: DeviceMesh, device: torch.device, compute: torch.dtype,
                         temperature: float, gradient_checkpointing: bool = False,
                         trainable: bool = True, chunk: int = 1024) -> ShardedPolicy:
    """Load the model at ``path`` sharded over ``mesh``: float32 shards, ``compute``-dtype
    all-gathers; the head runs ``chunk`` loss positions at a time. Collective: every rank of the
    mesh calls it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    full_sd: dict[str, Tensor] = {}
    full_buffers: dict[str, Tensor] = {}
    if dist.get_rank() == 0:
        full = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        full_sd, full_buffers = full.state_dict(), dict(full.named_buffers())
        del full
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
    if gradient_checkpointing:
        # Non-reentrant: it keeps gradients flowing although the inputs need no grad; the
        # recomputed forward goes through the layer's FSDP hooks again, as it must.
        lm.gradient_checkpointing_enable({"use_reentrant": False})
    # eval(): no dropout, so log-probs match the engine's; gradient checkpointing needs train().
    lm.train(gradient_checkpointing and trainable)
    policy = ShardedPolicy(lm, temperature, chunk)
    mp = MixedPrecisionPolicy(param_dtype=None if compute == torch.float32 else compute,
                              reduce_dtype=torch.float32)
    for layer in decoder_layers(lm):
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(policy, mesh=mesh, mp_policy=mp)
    for unit in fsdp_units(policy):
        unit.set_gradient_divide_factor(1.0)  # sum, not mean: the loss has the global normaliser
        unit.set_force_sum_reduction_for_comms(True)  # gloo has no PREMUL_SUM or AVG
    policy.to_empty(device=device)
    set_model_state_dict(lm, full_sd, options=StateDictOptions(full_state_dict=True,
                                                               broadcast_from_rank0=True))
    # Non-persistent buffers (rotary frequencies) are in no state dict: rank 0 sends its own.
    for name, buffer in lm.named_buffers():
        if dist.get_rank() == 0:
            buffer.copy_(full_buffers[name])
        dist.broadcast(buffer, src=0)
    del full_sd, full_buffers
    return policy.requires_grad_(trainable)


def fsdp_units(policy: ShardedPolicy) -> list[FSDPModule]:
    """The root first, then every decoder layer."""
    return [policy, *decoder_layers(policy.lm)]  # type: ignore[list-item]


def _owner(name: str, unit_names: list[str]) -> str:
    """The FSDP unit (by module name in ``lm``; ``""`` the root) that holds parameter ``name``."""
    return max((u for u in unit_names if name.startswith(u + ".")), key=len, default="")


def iter_full_weights(policy: ShardedPolicy, dtype: torch.dtype | None = None,
                      keep: bool = True) -> Iterator[tuple[str, Tensor]]:
    """``(HF name, full CPU tensor)`` for every weight, one FSDP unit at a time: the unit is
    all-gathered, its tensors copied out (cast to ``dtype`` if given), and it is freed before
    the next, so a rank's device holds one unit's full weights at most. A tied weight comes once,
    under its first name, as :meth:`learners.learner.Learner.named_weights` gives it.

    Collective: every rank must run the generator to the end (a rank that needs nothing passes
    ``keep=False``, yields nothing, and only takes part in the gathers; see :func:`drain`).
    Tensors come in the compute dtype unless ``dtype`` says otherwise."""
    lm = policy.lm
    layer_names = [n for n, m in lm.named_modules() if isinstance(m, FSDPModule) and m is not lm]
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for name, _ in lm.named_parameters():  # tied parameters once, under the first name
        groups[_owner(name, layer_names)].append(name)
    for unit_name in ["", *layer_names]:
        unit = policy if unit_name == "" else lm.get_submodule(unit_name)
        unit.unshard()
        try:
            if keep:
                for name in groups[unit_name]:
                    tensor = lm.get_parameter(name).detach()
                    yield name, tensor.to("cpu", dtype=dtype or tensor.dtype, copy=True)
        finally:
            unit.reshard()
    if keep:  # persistent buffers (none in Llama or Qwen), replicated on every rank
        params = {n for n, _ in lm.named_parameters(remove_duplicate=False)}
        for name, tensor in lm.state_dict(keep_vars=True).items():
            if name not in params:
                yield name, tensor.detach().to("cpu", copy=True)


def drain(weights: Iterator[tuple[str, Tensor]]) -> None:
    """Run a weight generator to its end, discarding what it yields (its collectives still run)."""
    collections.deque(weights, maxlen=0)
