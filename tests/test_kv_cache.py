"""The prefix KV cache: block-aligned reuse, private copies, byte bound and LRU order."""

from __future__ import annotations

import random

import pytest
import torch

from ragkit.generation.kv_cache import PrefixKVCache, common_prefix_length, kv_bytes

LAYERS, HEADS, DIM = 3, 2, 8
BLOCK = 4


def fake_kv(ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """KV whose value at each position encodes the token there, so reuse can be checked."""
    column = torch.tensor(ids, dtype=torch.float32).view(1, 1, -1, 1)
    keys = column.expand(1, HEADS, len(ids), DIM).contiguous()
    return [(keys + layer, -(keys + layer)) for layer in range(LAYERS)]


def entry_bytes(tokens: int) -> int:
    return LAYERS * 2 * HEADS * tokens * DIM * 4


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


def test_reuse_is_whole_blocks_and_leaves_a_token_to_compute():
    cache = PrefixKVCache(max_bytes=1 << 20, block_size=BLOCK)
    first = list(range(10))  # stores blocks [0, 8)
    assert cache.put(first, fake_kv(first))
    assert cache.prefixes() == [tuple(range(8))]

    extended = first + [50, 51, 52]
    hit = cache.lookup(extended)
    assert hit is not None and hit.tokens == 8
    assert hit.layers[1][0][0, 0, :, 0].tolist() == [float(i + 1) for i in range(8)]

    diverges_at_6 = list(range(6)) + [99] * 6
    assert cache.lookup(diverges_at_6).tokens == 4
    # The same 8 tokens again: one must still be computed, so only one block is reused.
    assert cache.lookup(list(range(8))).tokens == 4
    assert cache.lookup([7, 7, 7, 7, 7]) is None
    assert cache.lookup(list(range(3))) is None


def test_hits_are_private_copies():
    cache = PrefixKVCache(max_bytes=1 << 20, block_size=BLOCK)
    ids = list(range(8))
    cache.put(ids, fake_kv(ids))
    hit = cache.lookup(ids + [9])
    hit.layers[0][0].fill_(-7.0)
    again = cache.lookup(ids + [9])
    assert again.layers[0][0][0, 0, :, 0].tolist() == [float(i) for i in range(8)]


def test_prefix_entry_is_replaced_by_its_extension():
    cache = PrefixKVCache(max_bytes=1 << 20, block_size=BLOCK)
    short = list(range(8))
    cache.put(short, fake_kv(short))
    longer = short + list(range(100, 108))
    cache.put(longer, fake_kv(longer))
    assert cache.prefixes() == [tuple(longer)]
    assert cache.total_bytes == entry_bytes(16)


def test_byte_bound_holds_over_a_long_run_and_evicts_least_recently_used():
    bound = entry_bytes(8) * 5 + entry_bytes(4)  # room for five 8-token entries, not six
    cache = PrefixKVCache(max_bytes=bound, block_size=BLOCK)
    rng = random.Random(0)
    for n in range(200):
        ids = [n * 1000 + i for i in range(rng.choice([8, 9, 12, 16, 20]))]
        assert cache.put(ids, fake_kv(ids))
        assert cache.total_bytes <= bound
        stored = sum(kv_bytes(fake_kv(list(k))) for k in cache.prefixes())
        assert cache.total_bytes == stored
    assert len(cache) >= 2

    cache.clear()
    keys = [[n * 10 + i for i in range(8)] for n in range(5)]
    for ids in keys:
        cache.put(ids, fake_kv(ids))
    assert cache.lookup(keys[0] + [1]) is not None  # touch the oldest
    sixth = [999 + i for i in range(8)]
    cache.put(sixth, fake_kv(sixth))
    remaining = cache.prefixes()
    assert tuple(keys[1]) not in remaining  # least recently used went first
    assert tuple(keys[0]) in remaining
    assert remaining[-1] == tuple(sixth)


def test_entry_larger_than_the_bound_is_not_stored():
    cache = PrefixKVCache(max_bytes=entry_bytes(4), block_size=BLOCK)
    ids = list(range(8))
    assert not cache.put(ids, fake_kv(ids))
    assert len(cache) == 0 and cache.total_bytes == 0


def test_invalid_settings_name_the_value():
    with pytest.raises(ValueError, match="-1"):
        PrefixKVCache(max_bytes=-1, block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        PrefixKVCache(max_bytes=10, block_size=0)
