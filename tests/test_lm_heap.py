import subprocess
import sys

from synthpm.lm.heap import keep_freed_memory

# In a fresh process that imports torch first, as `lm_bench` does: in one that imported
# pyarrow before torch, glibc still grows the heap for some of torch's allocations (see
# `heap`), and pytest's conftest imports pyarrow.
FAULTS = """
import resource, torch
from synthpm.lm.heap import keep_freed_memory
print(keep_freed_memory())
for _ in range(3):  # the heap grows once to hold it
    torch.ones(4_000_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # 16 MB each: glibc's default would mmap and fault in 4,000 pages
    torch.ones(4_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_large_tensors_reuse_the_heap_without_page_faults():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    if kept == "True":  # glibc
        assert int(faults) < 1_000
    else:
        assert not keep_freed_memory()
