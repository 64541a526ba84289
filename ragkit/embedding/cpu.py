"""What this CPU offers: feature flags, native bf16, the int8 instruction set, usable cores.

The embedder picks its dtype and the ONNX export its int8 cache key from these, so they are
read once per process from /proc/cpuinfo (empty elsewhere, which means "nothing special").
"""

from __future__ import annotations

import contextlib
import os
from functools import cache


@cache
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (x86 "flags", ARM "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """bf16 pays off on CPUs with AMX or AVX512-BF16; elsewhere it is emulated and slower."""
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_int8_isa() -> str | None:
    """The int8 instruction set onnxruntime's kernels will use here, None if it has none.

    Part of the int8 export's cache key: how much quantisation moves vectors depends on the
    kernels (AVX2 without VNNI saturates 16-bit sums), so each ISA is validated on its own.
    """
    flags = _cpu_flags()
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "asimd" in flags:
        return "arm64"
    return None


def cpu_threads() -> int:
    """Cores to use: OMP_NUM_THREADS when set (as torch honours it, and as process pools such
    as Ray set it per worker), else the CPUs this process may run on."""
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
