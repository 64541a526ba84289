"""A byte-bounded LRU of passage KV, keyed by model, encoding context and passage tokens.

The same passages come back across questions (popular documents, follow-ups, tuning sweeps),
at whatever rank retrieval gives them. Each entry holds one passage's attention keys and values
computed once, on their own after a fixed context, with the rotary position its first token had
then; a generator rotates the keys to wherever the passage lands in a later prompt.

Entries are shared read-only: a user copies them into its own prompt buffer and never writes to
them, so a lookup needs no clone and eviction cannot pull tensors from under a running prefill.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PassageKV:
    """One passage's KV: `keys`/`values` shaped [layers, kv_heads, tokens, head_dim]; the keys
    carry the rotary embedding of positions `base`, `base + 1`, ..."""

    keys: Any
    values: Any
    base: int

    @property
    def tokens(self) -> int:
        return int(self.keys.shape[-2])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values))


@dataclass(frozen=True)
class StoreStats:
    """Cumulative lookups since the store was made (or cleared), and what it holds now."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


def passage_key(model: str, context: Sequence[int], tokens: Sequence[int]) -> str:
    """The store key of `tokens` encoded after `context` by `model` (name and dtype).

    A digest, not the token tuple, so a key costs the same whatever the passage's length.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(model.encode())
    for part in (context, tokens):
        digest.update(b"|" + ",".join(map(str, part)).encode())
    return digest.hexdigest()


class PassageKVStore:
    """Key → `PassageKV`, least recently used out when the byte budget is exceeded; thread-safe.

    `get` counts a hit or a miss; `put` returns how many entries it evicted, so callers can
    report both per request while `stats` gives the running totals.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, PassageKV] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def lru_keys(self) -> list[str]:
        """Stored keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: str, *, count: bool = True) -> PassageKV | None:
        """The entry under `key`, marked as recently used; `count=False` leaves the hit and miss
        totals alone (for lookups that are not a passage's, like the encoding context)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            if count:
                if entry is None:
                    self._misses += 1
                else:
                    self._hits += 1
            return entry

    def record(self, *, hit: bool) -> None:
        """Count a lookup made with `get(..., count=False)` (e.g. after trying another tier)."""
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def put(self, key: str, entry: PassageKV) -> int:
        """Store `entry` (replacing one under the same key); returns the entries evicted.

        An entry larger than the whole budget is not stored, and evicts nothing.
        """
        size = entry.nbytes
        if size > self.max_bytes:
            return 0
        evicted = 0
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes
                evicted += 1
            self._evictions += evicted
        return evicted

    def stats(self) -> StoreStats:
        with self._lock:
            return StoreStats(
                self._hits,
                self._misses,
                self._evictions,
                len(self._entries),
                self._bytes,
                self.max_bytes,
            )

    def clear(self) -> None:
        """Drop every entry and reset the counts."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._hits = self._misses = self._evictions = 0
