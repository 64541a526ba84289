"""Process-wide settings for ragkit's entry points, applied by `configure_process()`.

Library imports change nothing outside ragkit; the command line (every `ragkit` command, through
its callback), `ragkit.serve.command.serve` and the Ray workers that embed call this function
first, because these settings only help when they are in place before the libraries they steer
are imported or have allocated much. A program that uses ragkit as a library may call it too.

Environment variables, each set only when the user has not set it already:

- `ANONYMIZED_TELEMETRY=False`: chromadb sends no usage telemetry;
- `TOKENIZERS_PARALLELISM=false`: the tokenizers library's own thread pool would compete with
  ragkit's threads, and after a fork (Ray, process pools) it warns and may deadlock;
- `HF_HUB_DISABLE_PROGRESS_BARS=1`: no download bars in command output or logs;
- `TRANSFORMERS_VERBOSITY=error`: no load-time notices from transformers in command output.

The C heap: on glibc, `ragkit.heap.limit_heap_growth` caps the malloc arenas and fixes the trim
threshold, so a long ingest's resident memory stays flat instead of growing with the number of
embedding batches (see that module). These settings apply to the whole process.
"""

from __future__ import annotations

import os

__all__ = ["PROCESS_ENV", "configure_process"]

PROCESS_ENV: dict[str, str] = {
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def configure_process() -> None:
    """Apply the settings above; safe to call more than once (later calls change nothing)."""
    for name, value in PROCESS_ENV.items():
        os.environ.setdefault(name, value)
    from ragkit.heap import limit_heap_growth

    limit_heap_growth()
