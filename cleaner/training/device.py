"""Where and how a model computes: the device, mixed precision and memory format.

``train.device`` names the device (``auto`` takes CUDA when there is one);
``train.amp`` and ``train.channels_last`` apply on GPUs, and on the CPU with
``train.cpu_amp`` (bfloat16 only where the CPU computes it natively). Every
step that runs a model (training, validation, prediction, the embedding
model, benchmarks) asks here, so all of them take the same paths.
"""

from __future__ import annotations

import contextlib
import os

import torch

from cleaner.core.config import TrainConfig
from cleaner.training.distributed import (
    SINGLE,
    Dist,
)


def resolve_device(name: str, d: Dist = SINGLE) -> torch.device:
    """``auto`` picks the first GPU when there is one; under torchrun, the process's own."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and d.active:
        return torch.device("cuda", d.local_rank)
    return device


def device_problem(name: str) -> str | None:
    """Why ``train.device`` cannot run on this machine, or None (``auto`` always can)."""
    if name in ("auto", "cpu"):
        return None
    device = torch.device(name)
    if device.type == "mps":
        ok = torch.backends.mps.is_available()
        return None if ok else "train.device = 'mps': this machine has no MPS device"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return f"train.device = {name!r}: this machine has no CUDA device; use cpu or auto"
    if device.index is not None and device.index >= count:
        return f"train.device = {name!r}: this machine has CUDA devices 0..{count - 1}"
    return None


# Set to 1, the CPU takes the GPU's code paths too (bfloat16 autocast, channels_last), so
# that benchmarks/gpu_check.py --dry-run exercises them on a machine without a GPU. Slower,
# and the results differ from a plain CPU run: never for real work.
GPU_PATHS_ON_CPU = "CLEANER_GPU_PATHS_ON_CPU"


def _gpu_paths_on_cpu(device: torch.device) -> bool:
    return device.type == "cpu" and os.environ.get(GPU_PATHS_ON_CPU) == "1"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    mkldnn = torch.backends.mkldnn.is_available()
    return bool(mkldnn and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_amp(cfg: TrainConfig, device: torch.device) -> bool:
    """``train.amp`` applies on GPUs, and on the CPU with ``train.cpu_amp`` where the CPU
    has native bfloat16 (emulated, it is slower than float32)."""
    if not cfg.amp:
        return False
    if device.type == "cuda" or _gpu_paths_on_cpu(device):
        return True
    return device.type == "cpu" and cfg.cpu_amp and cpu_has_bf16()


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """Mixed precision when ``amp`` (see :func:`uses_amp`): bfloat16 where supported."""
    if not amp:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def uses_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """``train.channels_last`` applies on GPUs, and on the CPU with ``train.cpu_amp``."""
    on_cpu = device.type == "cpu" and (cfg.cpu_amp or _gpu_paths_on_cpu(device))
    return cfg.channels_last and (device.type == "cuda" or on_cpu)
