"""Device and precision choices shared by the aligner, its fine-tuning and the trainer.

bfloat16 pays where the hardware multiplies it natively: on CUDA, and on CPUs
with AVX-512-BF16 or AMX (recent Xeon and EPYC). Elsewhere torch emulates it,
and a bf16 matmul on an AVX2-only CPU ran at 0.6 GFLOP/s against 27 for
float32, so ``auto`` means float32 there. One place decides, so that the
aligner and both trainers agree on what "auto" means on a given machine.

    device = resolve_device("auto")            # "cuda" when available, else "cpu"
    dtype = resolve_dtype("auto", device)      # torch.bfloat16 or torch.float32
    use_bf16 = native_bf16(device)             # for torch.autocast
"""

from __future__ import annotations

import functools
import logging
import os

logger = logging.getLogger(__name__)

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")

_CPUINFO = "/proc/cpuinfo"
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_flags(path: str = _CPUINFO) -> set[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` (empty off Linux)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512-BF16 or AMX-BF16).

    Asks torch (``torch.cpu.get_capabilities``, torch >= 2.8) and falls back
    to the Linux CPU flags.
    """
    import torch

    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is not None:
        try:
            found = caps()
            return any(bool(found.get(flag)) for flag in _BF16_FLAGS)
        except (AttributeError, RuntimeError, TypeError):  # a young API; the flags still answer
            logger.debug("torch.cpu.get_capabilities failed; reading %s", _CPUINFO)
    return any(flag in _cpuinfo_flags() for flag in _BF16_FLAGS)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def native_bf16(device: str) -> bool:
    """Whether bf16 is fast on ``device`` (``cuda*``, or a CPU with native bf16)."""
    if device.startswith("cuda"):
        return True
    return device == "cpu" and cpu_has_native_bf16()


PRECISIONS = ("auto", "fp32", "bf16")


def computes_in_bf16(module, precision: str) -> bool:
    """Whether ``module`` runs under bf16 autocast: where asked (``bf16``), with ``auto``
    where its device has native bf16 (`native_bf16`), and always once its first weights
    are stored in bf16 (`relbridge.models.scoring.for_inference`), which float32 code
    around them could not read."""
    import torch

    first = next(module.parameters())
    return wants_bf16(precision, first.device.type) or first.dtype == torch.bfloat16


def wants_bf16(precision: str, device: str) -> bool:
    """Whether ``precision`` means bf16 on ``device``: ``bf16``, or ``auto`` with `native_bf16`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def autocast_for(module, precision: str):
    """bf16 autocast for ``module``'s device where `computes_in_bf16`; otherwise none."""
    import torch

    device = next(module.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=computes_in_bf16(module, precision))


def resolve_dtype(dtype: str, device: str):
    """A torch dtype; ``auto`` is bfloat16 where `native_bf16` holds, else float32."""
    import torch

    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


NATIVE_CACHE_ENTRIES = 16
"""Entries of oneDNN's primitive cache and of ideep's LRU cache (defaults 1,024 each)."""


def release_free_heap() -> bool:
    """Returns the C heap's free pages to the OS (glibc's ``malloc_trim``); False elsewhere.

    Beam's local runner hands a worker its whole share of a shuffle as one
    message. gRPC and protobuf parse it through temporary copies that glibc
    frees but keeps, so a worker starts its stage larger the larger its share:
    after reading 100,000 pairs, the two workers held 273/344 MB, and 214/257 MB
    once trimmed (10,000 pairs: 156/171 against 140/165 MB). The pipeline
    calls this once a bundle after a shuffle's input has arrived
    (`relbridge.pipeline.heap`), and before each shard it writes.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim else False


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once a process; None off glibc."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


def bound_native_caches(entries: int = NATIVE_CACHE_ENTRIES) -> None:
    """Caps the CPU kernel caches that grow with the number of distinct input shapes.

    oneDNN and ideep (torch's CPU matmul backends) keep compiled kernels and
    reordered weights per input shape, up to 1,024 of each. Batches cut to
    their longest sentence bring ever new shapes, so a process that aligns or
    extracts new text grows until the caches fill: the word aligner grew by about
    125 MB per 1,000 new pairs, and a Beam worker reached 3.9 GB on 100,000 pairs
    against 2.1 GB on 10,000. With 16 entries it stays flat at the same speed (2
    EPYC cores: 1,058 MB after 3,072 pairs against 1,467 MB, 58.8 against 58.3
    pairs/s). Within a forward pass every layer reuses one shape's few kernels,
    so a small cache still hits where it can.

    Both libraries read their environment variable once, at their first kernel:
    call this before a process's first matmul (the CLI and the loaders of the
    aligner and the extractor do). A value the user set wins.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(entries))
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(entries))
