"""The C allocator's settings for a process that extracts features frame after frame.

Every frame allocates the network's full-resolution maps (about 20 MB at 640x480) and frees them again. glibc's
malloc serves blocks that large with mmap and returns them to the system on free, or trims them off the heap, so
the next frame pays page faults to touch the same amount of fresh memory: that doubled alike-t's network time on
the CPU here (17 against 28-36 ms, BENCHMARKS.md "Models"). Keeping freed blocks in the heap for reuse costs no
more memory than the peak of one frame.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 1 * 2**30


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc (where it is the allocator) to serve blocks up to 32 MiB from the heap and to keep up to
    1 GiB of freed heap for reuse; once per process. Whether it took effect; False elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
