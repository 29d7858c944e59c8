import subprocess
import sys

from synthpm.lm.heap import keep_freed_memory

# In a fresh process: pytest's own heap holds whatever earlier tests left in it.
FAULTS = """
import resource, sys, torch
from synthpm.lm.heap import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "off")
for _ in range(3):  # the heap grows to hold it
    torch.ones(16_000_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # 64 MB each, above glibc's largest mmap threshold by default
    torch.ones(16_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    run = [sys.executable, "-c", FAULTS, mode]
    kept, count = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    return kept, int(count)


def test_large_tensors_reuse_the_heap_instead_of_fresh_pages():
    """glibc's default maps each 64 MB tensor anew and faults in its 15,625 pages: 312,520
    faults for 20 of them. Kept, the heap is reused: 0 in most runs, and at most 31,250
    (the heap regrew once or twice) in 8 (measured); a quarter of the default is the bound."""
    kept, count = faults("keep")
    if kept == "True":  # glibc
        default = faults("off")[1]
        assert default > 200_000 and count < default / 4
    else:
        assert not keep_freed_memory()


def test_a_decoder_leaves_the_allocator_alone():
    """Process-wide tuning is the entry points' choice (the CLI's `lm` commands), not a
    library constructor's."""
    import torch

    from synthpm.lm.decode import SignalDecoder
    from synthpm.lm.model import GPT, GPTConfig
    from synthpm.lm.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.train(['{"decision":"BUY","conviction":0.5}', "a prompt"], 300)
    keep_freed_memory.cache_clear()
    torch.manual_seed(0)
    SignalDecoder(GPT(GPTConfig(tokenizer.vocab_size, depth=1)), tokenizer)
    assert keep_freed_memory.cache_info().currsize == 0
