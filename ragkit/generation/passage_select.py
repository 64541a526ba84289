"""Choosing which reused passage tokens to recompute by how far their KV is off (CacheBlend).

Keys and values of the first layer depend only on a token and its position, so placed
passages are exact there; from the second layer on, a token's KV also reflects what it attended
to, and that is where independent encoding differs from a full prefill. One pass of the first
layer over the whole assembled prompt (about 1/layers of a full prefill) gives every token's
second-layer keys and values as the full prompt would make them; the tokens whose stored ones
differ most are the ones worth recomputing through every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.errors import ConfigError


def deviation_rows(
    loaded: Any,
    ids: Sequence[int],
    keys: Any,
    values: Any,
    candidates: Sequence[int],
    count: int,
) -> list[int]:
    """The `count` rows of `candidates` whose second-layer KV in the buffer is furthest from
    what the whole prompt gives; the buffer's first layer is overwritten with fresh KV."""
    import torch

    from ragkit.generation.passage_prefill import ScatterCache

    if count <= 0 or not candidates:
        return []
    inner = getattr(loaded.model, "model", None)
    if inner is None or not hasattr(inner, "layers") or len(inner.layers) < 2:
        raise ConfigError("choosing tokens by KV deviation needs a decoder with two layers or more")
    n = len(ids)
    positions = torch.arange(n)[None]
    mask = (torch.arange(n)[None, :] <= torch.arange(n)[:, None])[None, None]
    with loaded.lock:
        hidden = inner.embed_tokens(torch.tensor([list(ids)]))
        cos, sin = inner.rotary_emb(hidden, positions)
        cache = ScatterCache(list(keys), list(values), positions[0], n)
        hidden = inner.layers[0](
            hidden,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            position_embeddings=(cos, sin),
        )
        second = inner.layers[1]
        x = second.input_layernorm(hidden)
        attention = second.self_attn
        head_dim = keys.shape[-1]
        k = attention.k_proj(x).view(1, n, -1, head_dim).transpose(1, 2)
        v = attention.v_proj(x).view(1, n, -1, head_dim).transpose(1, 2)
    half = head_dim // 2
    k = k * cos[:, None] + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin[:, None]
    index = torch.tensor(list(candidates))
    moved = (k[0][:, index] - keys[1, 0][:, index]).float().pow(2).sum((0, 2))
    moved += (v[0][:, index] - values[1, 0][:, index]).float().pow(2).sum((0, 2))
    top = torch.topk(moved, min(count, len(candidates))).indices
    return sorted(int(index[i]) for i in top)
