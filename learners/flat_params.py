"""A model's trainable parameters as views of one flat buffer, with a float32 master copy.

All parameters are views of one flat buffer and their gradients views of another (as Megatron and
DeepSpeed do), so the optimiser-side work (casting gradients, zeroing, the norm, fused AdamW,
copying weights back) is one kernel each instead of one per tensor: on a busy 2-core CPU each
per-tensor kernel waits on OpenMP's thread barrier, which with ~270 tensors cost seconds a step.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["FlatParams"]


class FlatParams:
    """A model's trainable parameters re-seated as views of one flat buffer, gradients as views
    of another (with LoRA, the adapter's: the frozen base has no gradient and no optimiser state).

    ``master`` is the float32 tensor the optimiser steps: the flat buffer itself in float32, a
    copy of it otherwise. Autograd accumulates into the existing ``.grad`` views in place, so
    after ``backward`` the flat ``grad`` holds every gradient. Tied weights are one parameter.

    In mixed precision the step's gradient is summed in float32, as Megatron and DeepSpeed do:
    after each micro-batch's backward :meth:`accumulate_grads` moves the bf16 gradient into
    ``master.grad``. Letting autograd sum micro-batches in the bf16 buffer would round the running
    sum to 8 bits after every micro-batch, an error that grows with their number.
    """

    def __init__(self, model: torch.nn.Module | Sequence[torch.nn.Parameter]) -> None:
        """``model``: its parameters that require grad; or the parameters themselves (one LoRA
        adapter of several: peft lets only the active adapter require grad)."""
        # Tied weights appear once; frozen ones (a LoRA base) stay where they are.
        self.params = ([p for p in model.parameters() if p.requires_grad]
                       if isinstance(model, torch.nn.Module) else list(model))
        if not self.params:
            raise ValueError("FlatParams: no parameters to train")
        total = sum(p.numel() for p in self.params)
        first = self.params[0]
        self.flat = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            self.flat[offset:offset + n].copy_(p.data.view(-1))
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n
        self.mixed = first.dtype != torch.float32
        self.master = self.flat.float() if self.mixed else self.flat
        self.master.grad = torch.zeros_like(self.master) if self.mixed else self.grad
        # True while master.grad holds nothing of the current step (it is stale, not zeroed).
        self._master_grad_empty = True

    def accumulate_grads(self) -> None:
        """After each micro-batch's backward: add the model's (bf16) gradient into the float32
        ``master.grad`` and zero the model's for the next micro-batch. A no-op in float32, where
        ``master.grad`` is the model's gradient buffer and autograd already sums in float32."""
        if not self.mixed:
            return
        if self._master_grad_empty:
            # The step's first micro-batch: a plain cast-copy; the mixed-dtype add is several
            # times slower on CPU (not vectorised), and most steps have one micro-batch.
            self.master.grad.copy_(self.grad)
            self._master_grad_empty = False
        else:
            self.master.grad.add_(self.grad)
        self.grad.zero_()

    def after_step(self) -> None:
        """Publish the stepped master weights to the model; clear the gradient."""
        if self.mixed:
            self.flat.copy_(self.master)
            # Cleared by a flag, not a kernel: the next step's first micro-batch overwrites it.
            self._master_grad_empty = True
        else:
            self.grad.zero_()
