"""Passage KV saved to disk ahead of time (`ragkit kv warm`), read when memory lacks a passage.

One safetensors file per passage, named by its store key, so a server started later (or
several, on one machine) finds every passage the warm-up computed without computing it again.
Generation only reads: the folder grows only when a warm-up is run, by what it was asked to
cover.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ragkit.generation.passage_store import PassageKV

SUFFIX = ".safetensors"


class PassageKVDisk:
    """A folder of passage KV files keyed like `PassageKVStore`; writes are atomic."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> PassageKV | None:
        """The stored entry, or None when absent or unreadable (then it is computed again)."""
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                base = int((f.metadata() or {}).get("base", "-1"))
                keys, values = f.get_tensor("keys"), f.get_tensor("values")
        except (OSError, SafetensorError, ValueError):
            return None
        return PassageKV(keys, values, base) if base >= 0 else None

    def put(self, key: str, entry: PassageKV) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=SUFFIX)
        os.close(fd)
        try:
            tensors = {"keys": entry.keys.contiguous(), "values": entry.values.contiguous()}
            save_file(tensors, tmp, metadata={"base": str(entry.base)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(f"*/*{SUFFIX}"))

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())
