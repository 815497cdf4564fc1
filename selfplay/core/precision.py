"""Which floating-point type to compute in, decided once from what the hardware does natively.

``auto`` (the default of every dtype setting) means bfloat16 on a GPU and on a CPU with native
bf16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` instruction sets), and float32 on any other
CPU. Without those instructions PyTorch emulates bf16 and it is several times slower than float32:
on an AVX2-only AMD EPYC core, a 64x576 by 1536x576 ``F.linear`` ran at 70 GFLOP/s in float32 and
8.3 GFLOP/s in bf16, and a learner step that took 32.5 s in float32 did not finish in 15 minutes in
bf16. With native bf16 (AVX-512 BF16) the same product ran at 104 GFLOP/s in float32 and 423 in bf16.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Every dtype name a config may give; ``auto`` is resolved by :func:`resolve_dtype`.
DTYPE_NAMES = ("auto", "bfloat16", "float16", "float32")
#: CPU feature flags (as ``/proc/cpuinfo`` names them) that compute bf16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_capability() -> str:
    """PyTorch's name for the vector instructions it uses here (``AVX512``, ``AVX2``, ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (else PyTorch emulates it, slowly)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def resolve_dtype(name: str, device: str) -> tuple[str, str]:
    """``(dtype name, why)`` for a configured dtype on ``device`` (``cpu`` or ``cuda``).

    An explicit name is kept as given; ``auto`` becomes bfloat16 on a GPU or a CPU with native
    bf16, else float32. ``why`` is one phrase for the start-up log."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype {name!r}: expected one of {DTYPE_NAMES}")
    if name != "auto":
        return name, "as configured"
    if device.startswith("cuda"):
        return "bfloat16", "auto: GPU"
    if native_bf16_cpu():
        return "bfloat16", f"auto: the CPU computes bf16 natively ({cpu_capability()}, " \
                           f"{'/'.join(f for f in NATIVE_BF16_FLAGS if f in cpu_flags())})"
    return "float32", f"auto: the CPU has no native bf16 ({cpu_capability()}; no " \
                      f"{' or '.join(NATIVE_BF16_FLAGS)}), where bf16 is several times slower"


def torch_dtype(name: str) -> "torch.dtype":
    """The ``torch.dtype`` for a resolved dtype name (not ``auto``)."""
    import torch

    if name not in DTYPE_NAMES[1:]:
        raise ValueError(f"dtype {name!r}: expected one of {DTYPE_NAMES[1:]} (resolve 'auto' first)")
    return getattr(torch, name)


def local_device() -> str:
    """``cuda`` where this process sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
