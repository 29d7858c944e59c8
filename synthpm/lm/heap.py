"""Keep freed memory in the process instead of handing it back to the OS (glibc only).

glibc serves each allocation above its mmap threshold (a few MB at most) with a fresh
`mmap` and unmaps it on free, so every large activation of a forward pass (a batched
prefill makes dozens of 1-12 MB tensors) is new memory, which the kernel zero-fills page by
page. With the thresholds raised the heap is reused: after the first batch of a shape, a
decoder's batches make no page faults, and its prefills run faster
(benchmarks/results/lm_decode.md). The cost is memory the process keeps once it has used
it, which a decoder or a training run reuses at once. PyTorch's CPU allocator calls glibc's
malloc, so `mallopt` is the knob.

The setting is process-wide, so it is the choice of an entry point (the CLI commands that
run the model, `benchmarks/lm_bench.py`), never of a library constructor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_KEEP = 1 << 30  # bytes: allocations below this come from the heap, which is never trimmed


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); False where there is no
    glibc (macOS, Windows, musl): nothing changes there."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
