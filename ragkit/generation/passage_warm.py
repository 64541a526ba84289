"""Compute the passage KV of an index's chunks ahead of time (`ragkit kv warm`).

Each chunk is rendered as the pipeline's prompt would render it and its KV written to a
folder; a local generator with `kv_reuse: passages` and the same `passage_cache_dir` then reads
a passage from there the first time a prompt brings it, instead of computing it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.types import Retrieved


@dataclass(frozen=True)
class WarmReport:
    directory: Path
    chunks: int
    computed: int
    present: int
    files: int
    bytes: int


def warm_passages(
    spec: Any, directory: str | Path | None = None, limit: int | None = None, progress: bool = False
) -> WarmReport:
    """Write the KV of the first `limit` chunks of `spec`'s index (all when None) to `directory`
    (default: the spec's `generator.passage_cache_dir`); resumable, since passages already in
    the folder are skipped."""
    from ragkit import build
    from ragkit.generation.local import LocalGenerator
    from ragkit.generation.passage_disk import PassageKVDisk

    g = spec.generator
    if g.kind != "local":
        raise ConfigError(
            f"generator.kind: kv warm computes the local generator's passage KV, not {g.kind!r}'s"
        )
    folder = directory or g.passage_cache_dir
    if not folder:
        raise ConfigError("give --dir, or set generator.passage_cache_dir in the pipeline")
    if limit is not None and limit <= 0:
        raise ValueError(f"--limit must be > 0, got {limit}")
    section = g.model_copy(update={"kv_reuse": "passages", "passage_cache_dir": str(folder)})
    generator = build.generator(spec.model_copy(update={"generator": section}))
    if not isinstance(generator, LocalGenerator):  # a generator registered for this section
        raise ConfigError(f"kv warm needs a LocalGenerator, got {type(generator).__name__}")
    index = build.store(spec)
    index.require_chunks()
    chunks = index.get_chunks()[:limit]
    assembler = build.prompt_assembler(spec)
    computed = present = 0
    for n, chunk in enumerate(chunks, start=1):
        now, before = generator.precompute_passages(
            [assembler.passage_prompt(Retrieved(chunk, 1.0, 1))]
        )
        computed, present = computed + now, present + before
        if progress and (n % 10 == 0 or n == len(chunks)):
            print(f"\r{n}/{len(chunks)} chunks", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    disk = PassageKVDisk(folder)
    files = disk.files()
    return WarmReport(
        Path(folder),
        len(chunks),
        computed,
        present,
        len(files),
        sum(f.stat().st_size for f in files),
    )
