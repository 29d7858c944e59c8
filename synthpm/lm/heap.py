"""Keep freed memory in the process instead of handing it back to the OS (glibc only).

glibc serves each allocation above its mmap threshold (a few MB at most) with a fresh
`mmap` and unmaps it on free, so every large activation of a forward pass (a 64-prompt
prefill makes dozens of 1-12 MB tensors) is new memory, and the kernel zero-fills it page
by page: about 15,000 page faults per such prefill on this project's 2-core machine. With
the threshold raised the heap is reused: the same prefill went from 70-91 ms (min of 15,
three runs) and 87-129 ms median to 60-62 ms and 63-66 ms, with 0 faults (measured).
The cost is memory the process keeps once it has used it; a decoder or a training run
reuses it at once. PyTorch's CPU allocator calls glibc's malloc, so `mallopt` is the knob.

The first batch of a new shape still faults its memory in once (5,365 faults for a
64-prompt signal decode), the next ones make none, whether pyarrow (the CLI, via the store)
or torch was imported first (measured; an earlier decoder made 2,944 a batch where pyarrow
came first). Without the knob a 64-prompt prefill alone made 13,000-20,000.
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
