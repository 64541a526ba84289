"""Keep a long ingest's heap from growing with the number of batches it embeds.

Embedding batches of varying lengths allocates and frees large tensors of ever-different sizes
from several threads. glibc's defaults then keep the freed memory: each thread gets its own
arena, and after a large block is freed the mmap threshold rises, so later large tensors are
carved from the heap and fragment it. Resident memory climbs for thousands of batches before it
levels off. Two `mallopt` settings stop that at no measurable cost in speed: at most two arenas,
and a fixed trim threshold (which also pins the mmap threshold). Other C libraries and other
systems are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger("ragkit")

_M_TRIM_THRESHOLD = -1
_M_ARENA_MAX = -8
_TRIM_THRESHOLD_BYTES = 64 * 1024
_ARENAS = 2
_applied = False


def limit_heap_growth() -> bool:
    """Apply the settings once per process; True when they are in effect (glibc on Linux)."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_ARENA_MAX, _ARENAS) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1 and ok
    except (OSError, AttributeError) as exc:
        logger.debug("mallopt unavailable: %s", exc)
        return False
    _applied = ok
    return ok
