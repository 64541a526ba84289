"""A byte-bounded LRU of prompt KV caches, looked up by the longest common token prefix.

RAG prompts repeat themselves: the same system rules and instructions, and in iterative
retrieval the same passages followed by new ones. Keeping the attention keys/values of recent
prompts lets the next prompt compute only the tokens after the longest prefix it shares with
one of them.

Reuse is limited to whole blocks of `block_size` tokens counted from position 0, because the
generator prefills in exactly those blocks: a reused block then holds bit-for-bit the values a
fresh prefill would compute, which keeps greedy output identical with the cache on or off (a
bf16 forward over [a] then [b] is not numerically the same as one over [a + b]).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# One (keys, values) pair per layer, each shaped [batch, heads, tokens, head_dim].
LayerKV = tuple[Any, Any]


@dataclass(frozen=True)
class CacheHit:
    """The reusable part of a stored prompt: `tokens` positions and a private copy of their KV."""

    tokens: int
    layers: tuple[LayerKV, ...]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def kv_bytes(layers: Sequence[LayerKV]) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


class PrefixKVCache:
    """Prompt token ids → KV of their whole blocks, evicting least recently used entries.

    Entries are never handed out: a hit returns cloned tensors cropped to the reused length, so
    whatever the caller appends during generation cannot reach a stored entry.
    """

    def __init__(self, max_bytes: int, block_size: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {block_size}")
        self.max_bytes = max_bytes
        self.block_size = block_size
        self._entries: OrderedDict[tuple[int, ...], tuple[tuple[LayerKV, ...], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def prefixes(self) -> list[tuple[int, ...]]:
        """Stored token prefixes, least recently used first."""
        with self._lock:
            return list(self._entries)

    def reusable_length(self, shared: int, prompt_length: int) -> int:
        """Whole blocks of a shared prefix, leaving at least one prompt token to compute."""
        limit = min(shared, prompt_length - 1)
        return max(0, limit // self.block_size * self.block_size)

    def lookup(self, ids: Sequence[int]) -> CacheHit | None:
        """The entry sharing the longest reusable prefix with `ids`, marked as recently used."""
        with self._lock:
            best_key, best = None, 0
            for key in self._entries:
                n = self.reusable_length(common_prefix_length(key, ids), len(ids))
                if n > best:
                    best_key, best = key, n
            if best_key is None:
                return None
            self._entries.move_to_end(best_key)
            layers, _ = self._entries[best_key]
            copied = tuple((k[..., :best, :].clone(), v[..., :best, :].clone()) for k, v in layers)
        return CacheHit(best, copied)

    def put(self, ids: Sequence[int], layers: Sequence[LayerKV]) -> bool:
        """Store the whole-block part of a prompt's KV; False when it does not fit or is empty.

        An entry whose tokens are a prefix of the new one is dropped: the new entry serves every
        lookup it could.
        """
        if self.max_bytes == 0:
            return False
        usable = len(ids) // self.block_size * self.block_size
        if usable == 0:
            return False
        key = tuple(ids[:usable])
        stored = tuple((k[..., :usable, :].clone(), v[..., :usable, :].clone()) for k, v in layers)
        size = kv_bytes(stored)
        if size > self.max_bytes:
            return False
        with self._lock:
            for old in [k for k in self._entries if key[: len(k)] == k]:
                self._drop(old)
            self._entries[key] = (stored, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: tuple[int, ...]) -> None:
        _, size = self._entries.pop(key)
        self._bytes -= size
