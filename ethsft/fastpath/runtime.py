"""Process-wide settings of ethsft's fast path (``optimization.fast_path``) and what this install can use:
``configure_runtime`` turns cuDNN SDPA off on GPUs (it builds a new execution plan for every new sequence shape:
stalls) and, on CPU, keeps freed memory in the heap (``keep_freed_memory``); ``liger_available`` says whether
liger-kernel is installed (``optimization.use_liger_kernel: auto``)."""

from __future__ import annotations

import torch


def configure_runtime() -> dict:
    """Process-wide switches of the fast path; returns what was set."""
    done = {}
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)  # per-shape plan rebuilds stall variable-length training
        done["cudnn_sdp"] = False
    else:
        done["heap_keeps_freed_memory"] = keep_freed_memory()
    return done


def keep_freed_memory() -> bool:
    """CPU training frees and allocates the same large buffers (logits over 32000 tokens) every step. glibc hands
    each back to the OS (munmap) and page-faults it in again: half of every step was kernel time on 2 cores. Keep
    freed memory in the process heap instead (glibc only; elsewhere nothing changes)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None
