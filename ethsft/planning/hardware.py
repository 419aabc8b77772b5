"""The one table of GPUs ethsft knows: what the estimate sizes a run against and what ``ethsft bench`` divides
its throughput by for MFU, so the two never disagree about a card.

VRAM as CUDA reports it (GiB); dense bf16 tensor TFLOP/s with fp32 accumulation (what torch's bf16 matmuls use;
GeForce cards run that at half their fp16-accumulate rate); memory bandwidth (GB/s). Figures from NVIDIA's
datasheets / architecture whitepapers (no sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass

from ethsft.config.schema import ConfigError
from ethsft.units import GiB


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    vram_gib: float
    bf16_tflops: float
    bandwidth_gbs: float
    bf16: bool = True
    match: tuple[str, ...] = ()  # lower-case substrings of torch.cuda.get_device_name()


# Order matters for matching: a specific entry (L40S, A100 40GB, H100 PCIe) before the general one its name contains.
GPUS: dict[str, GPU] = {g.key: g for g in [
    GPU("rtx3060", "NVIDIA GeForce RTX 3060 12GB", 11.76, 25.6, 360, match=("rtx 3060",)),
    GPU("rtx3090", "NVIDIA GeForce RTX 3090", 23.69, 71.0, 936, match=("rtx 3090",)),
    GPU("rtx4090", "NVIDIA GeForce RTX 4090", 23.99, 165.2, 1008, match=("rtx 4090",)),
    GPU("t4", "NVIDIA T4", 14.58, 65.0, 320, bf16=False, match=("tesla t4", " t4")),
    GPU("l40s", "NVIDIA L40S 48GB", 44.5, 362.0, 864, match=("l40s",)),
    GPU("l4", "NVIDIA L4", 22.03, 121.0, 300, match=(" l4",)),
    GPU("a10g", "NVIDIA A10G", 22.07, 70.0, 600, match=("a10g",)),
    GPU("a100-40gb", "NVIDIA A100 40GB", 39.39, 312.0, 1555, match=("a100-sxm4-40gb", "a100-pcie-40gb", "a100 40")),
    GPU("a100", "NVIDIA A100 80GB", 79.15, 312.0, 2039, match=("a100",)),
    GPU("h100-pcie", "NVIDIA H100 PCIe 80GB", 79.19, 756.0, 2000, match=("h100 pcie",)),
    GPU("h100", "NVIDIA H100 80GB (SXM)", 79.19, 989.0, 3350, match=("h100",)),
    GPU("h800", "NVIDIA H800 80GB (SXM)", 79.19, 989.0, 3350, match=("h800",)),
    GPU("h200", "NVIDIA H200 141GB", 139.8, 989.0, 4800, match=("h200",)),
]}


def named_gpu(key: str) -> GPU:
    """The table entry for a ``--gpu`` key (case, spaces and underscores forgiven)."""
    k = key.lower().replace(" ", "").replace("_", "-")
    if k in GPUS:
        return GPUS[k]
    raise ConfigError(f"unknown GPU {key!r}; choose one of: {', '.join(GPUS)} (or 'auto' for the detected one)")


def gpu_by_name(device_name: str | None) -> GPU | None:
    """The table entry whose pattern a CUDA device name contains; None for a card the table lacks."""
    low = " " + (device_name or "").lower()
    return next((g for g in GPUS.values() if any(m in low for m in g.match)), None)


def detect_gpu() -> GPU | None:
    """The visible CUDA GPU as a table entry (known name) or an ad-hoc one (unknown name: VRAM only)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory / GiB
    gpu = gpu_by_name(name)
    if gpu is not None:
        return GPU(gpu.key, name, total, gpu.bf16_tflops, gpu.bandwidth_gbs, gpu.bf16, gpu.match)
    # Unknown card: guess throughput from an H100-relative scale on SM count (marked as a guess by the caller).
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return GPU("unknown", name, total, GPUS["h100"].bf16_tflops * sms / 132 * 0.3, 1000.0,
               torch.cuda.is_bf16_supported())


# What a card's CUDA context (driver, cuBLAS/cuDNN workspaces) takes before PyTorch allocates anything: a 12 GB
# card leaves PyTorch ~11.5 GiB. "Fits an N GB card" means it ran under a cap of N - CARD_RESERVE_GIB. (The
# estimate sizes the whole card instead: torch's peak plus the context it measured, memory.CUDA_CONTEXT_GIB.)
CARD_RESERVE_GIB = 0.5

# The shipped presets (configs/) and the card (GB) each is fitted to; where two fit one size, the first is the one
# recommended for it (guide_12gb.yaml is the guide's own layout, kept to compare against).
PRESET_CARDS = {"8gb.yaml": 8, "training_config.yaml": 12, "guide_12gb.yaml": 12, "16gb.yaml": 16, "24gb.yaml": 24,
                "80gb.yaml": 80}


def card_cap_gib(card_gb: float) -> float:
    """The memory PyTorch gets on a ``card_gb`` GB card: what a fit claim is measured under."""
    return card_gb - CARD_RESERVE_GIB


def cap_memory(cap_gib: float, device: int = 0) -> float:
    """Cap PyTorch's allocator on ``device`` at ``cap_gib`` GiB (``set_per_process_memory_fraction``), so a bigger
    card behaves like the smaller one: an allocation past the cap raises OutOfMemoryError. Returns the fraction."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    if cap_gib * GiB > total:
        raise ConfigError(f"cannot cap memory at {cap_gib:g} GiB: {torch.cuda.get_device_name(device)} has "
                          f"{total / GiB:.1f} GiB")
    fraction = cap_gib * GiB / total
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
