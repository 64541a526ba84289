"""One forward pass that decodes a token for each of several sequences of different lengths.

Every sequence keeps its own `DynamicCache`, filled by its own prefill, so the exact prefix KV
cache works per sequence and nothing is padded. The linear layers, norms and rotary
embeddings run once over the stacked rows; only attention is split: a cache stand-in hands
each layer a list of the rows' own keys and values, and an attention function registered with
transformers runs the model's usual SDPA once per row, on exactly the tensors that sequence
would see decoding alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

RAGGED_ATTENTION = "ragkit_ragged_sdpa"


class RaggedKV(list):
    """One layer's keys (or values) for each row, each `[1, kv_heads, own_length, head_dim]`."""


def ragged_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """SDPA per row for a ragged batch; plain SDPA for ordinary tensors (prefill)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not isinstance(key, RaggedKV):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows = [
        sdpa_attention_forward(module, query[i : i + 1], k, v, None, **kwargs)[0]
        for i, (k, v) in enumerate(zip(key, value, strict=True))
    ]
    return torch.cat(rows), None


class RaggedCache:
    """Stands in for a transformers cache during one batched decode step.

    Row i's new key/value goes to `caches[i]`; attention then sees each row's own history.
    """

    def __init__(self, caches: Sequence[Any]) -> None:
        self.caches = list(caches)

    def update(
        self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[RaggedKV, RaggedKV]:
        keys, values = RaggedKV(), RaggedKV()
        for row, cache in enumerate(self.caches):
            k, v = cache.update(key_states[row : row + 1], value_states[row : row + 1], layer_idx)
            keys.append(k)
            values.append(v)
        return keys, values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(c.get_seq_length(layer_idx) for c in self.caches)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(RAGGED_ATTENTION, ragged_attention)
    AttentionMaskInterface.register(RAGGED_ATTENTION, sdpa_mask)


def enable_ragged_decode(model: Any) -> bool:
    """Switch an SDPA model to the ragged-capable attention; False where it cannot batch.

    Prefill is unchanged: ordinary tensors go to the same SDPA function with the same mask.
    Models with sliding-window layers are left alone, since a row's window would need a mask.
    """
    config = model.config
    if getattr(config, "_attn_implementation", None) == RAGGED_ATTENTION:
        return True
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        return False
    _register()
    config._attn_implementation = RAGGED_ATTENTION
    return True


def decode_step(model: Any, caches: Sequence[Any], tokens: Sequence[int]) -> Any:
    """Next-token logits `[rows, vocab]` after feeding `tokens[i]` to the sequence `caches[i]`."""
    import torch

    positions = [[c.get_seq_length()] for c in caches]
    out = model(
        input_ids=torch.tensor([[t] for t in tokens]),
        position_ids=torch.tensor(positions),
        # A ready mask mapping: each row attends to all of its own cache, so no mask is built.
        attention_mask={"full_attention": None},
        cache=RaggedCache(caches),
        use_cache=True,
    )
    return out.logits[:, -1]
