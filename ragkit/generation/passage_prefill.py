"""Prefill a RAG prompt from stored passage KV: rotate, place, and recompute a few tokens.

A passage's keys and values are computed once and stored with the rotary position they were
computed at: by default in the first prompt that brings it, where it is computed exactly with
that prompt before it in view (so a prompt of new passages is answered as full prefill would),
or with `passage_misses: alone` on its own after a fixed context (the chat template's opening),
so the stored KV does not depend on which prompt came first. In a later prompt each
stored passage is copied to where it lands, its keys rotated by the position difference (rotary
embeddings compose: rotating a key made at position p by d gives the key made at p + d; values
carry no position). What an independent encoding misses is attention across passages and to the
question before them; the tokens recomputed with the full prompt in view restore it where it
matters most: the text before the passages, each passage's number and first tokens (where an
independent encoding puts most of its attention sink), and everything after the passages, whose
last token gives the first answer token. The recomputed rows run in one batched forward whose
cache stand-in writes their keys and values into the prompt's buffer at their positions, with a
mask that lets each row see exactly the tokens before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragkit.errors import ConfigError
from ragkit.generation.kv_cache import CacheHit, PrefixKVCache
from ragkit.generation.passage_encode import PassageReuse, passage_entries
from ragkit.generation.passage_plan import PromptPlan
from ragkit.generation.passage_select import deviation_rows
from ragkit.generation.passage_store import PassageKV, passage_key

# Rotary variants whose angle is linear in the position, so a rotation by d moves a key by d.
COMPOSABLE_ROPE = frozenset({"default", "linear", "llama3", "yarn"})


@dataclass
class Prefilled:
    """A finished prefill: the prompt's KV, the last token's logits and what was reused."""

    kv: Any
    logits: Any
    reused: int
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class Rotator:
    """Moves keys made at one position to another with the model's own rotary frequencies."""

    def __init__(self, model: Any) -> None:
        rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
        kind = getattr(rotary, "rope_type", None)
        if rotary is None or kind not in COMPOSABLE_ROPE:
            raise ConfigError(
                f"kv_reuse 'passages' needs rotary position embeddings linear in the position; "
                f"{type(model).__name__} has {kind or 'none'}"
            )
        self.rotary = rotary
        self.scale = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)

    def __call__(self, keys: Any, delta: int) -> Any:
        """`keys` [..., tokens, head_dim] rotated by `delta` positions, computed in float32."""
        import torch

        if delta == 0:
            return keys
        probe = torch.empty(0, dtype=torch.float32)
        cos, sin = self.rotary(probe, torch.tensor([[delta]]))
        cos, sin = cos[0, 0] / self.scale, sin[0, 0] / self.scale
        k = keys.float()
        half = k.shape[-1] // 2
        rotated = torch.cat((-k[..., half:], k[..., :half]), dim=-1)
        return (k * cos + rotated * sin).to(keys.dtype)


class ScatterCache:
    """Stands in for a transformers cache while chosen rows of a prompt are recomputed.

    Each layer's new keys/values go to the rows' positions in the prompt's preallocated buffer
    (replacing what was placed there), and attention sees the buffer up to the last row.
    """

    def __init__(self, keys: list[Any], values: list[Any], index: Any, upto: int) -> None:
        self.keys, self.values, self.index, self.upto = keys, values, index, upto

    def update(
        self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[Any, Any]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys.index_copy_(2, self.index, key_states)
        values.index_copy_(2, self.index, value_states)
        return keys[:, :, : self.upto], values[:, :, : self.upto]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.upto


_ROTATORS: dict[int, Rotator] = {}
_ROTATORS_LOCK = threading.Lock()


def rotator_for(model: Any) -> Rotator:
    with _ROTATORS_LOCK:
        if id(model) not in _ROTATORS:
            _ROTATORS[id(model)] = Rotator(model)
        return _ROTATORS[id(model)]


def prefill_passages(
    loaded: Any,
    plan: PromptPlan,
    reuse: PassageReuse,
    prefix_cache: PrefixKVCache | None,
    block: int,
    cancelled: Callable[[], bool],
) -> Prefilled | None:
    """Prefill `plan` from stored passages (computing the missing ones first); None when
    cancelled. The text before the passages reuses `prefix_cache` as an exact prefix."""
    import torch
    from transformers import DynamicCache

    found = passage_entries(loaded, plan, reuse, block, cancelled)
    if found is None:
        return None
    model = loaded.model
    config = model.config
    ids, n, prefix_end = plan.ids, len(plan.ids), plan.prefix_end
    hit = prefix_cache.lookup(ids[:prefix_end]) if prefix_cache is not None else None
    if plan.context == ids[:prefix_end]:  # the text before the passages is the stored context
        context = reuse.store.get(passage_key(reuse.model_tag, (), plan.context), count=False)
        if context is not None:
            hit = CacheHit(
                context.tokens,
                tuple(zip(context.keys[:, None], context.values[:, None], strict=True)),
            )
    layers = config.num_hidden_layers
    heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype = model.get_input_embeddings().weight.dtype
    keys = torch.zeros(layers, 1, heads, n, head_dim, dtype=dtype)
    values = torch.zeros_like(keys)
    start = 0
    if hit is not None:
        start = hit.tokens
        for layer, (k, v) in enumerate(hit.layers):
            keys[layer, :, :, :start] = k
            values[layer, :, :, :start] = v
    rows = list(range(start, prefix_end))
    placed_rows: list[int] = []  # rows holding placed passage KV
    stored_rows: set[int] = set()  # of those, the ones from the store (not computed just now)
    rotate = rotator_for(model)
    k_first = reuse.recompute_tokens
    for span, placed in zip(plan.passages, found.entries, strict=True):
        if placed is None:
            rows += range(span.start, span.end)
            continue
        entry, stored = placed
        keys[:, 0, :, span.body : span.end] = rotate(entry.keys, span.body - entry.base)
        values[:, 0, :, span.body : span.end] = entry.values
        rows += range(span.start, span.body + k_first)
        placed_rows += range(span.body + k_first, span.end)
        if stored:
            stored_rows.update(range(span.body + k_first, span.end))
    rows += range(plan.suffix_start, n)
    if reuse.recompute_share > 0 and placed_rows:
        count = round(reuse.recompute_share * len(placed_rows))
        with torch.inference_mode():
            chosen = deviation_rows(loaded, ids, keys, values, placed_rows, count)
        rows = sorted(set(rows).union(chosen))
        stored_rows.difference_update(chosen)
    reused = start + len(stored_rows)
    logits = recompute_rows(loaded, ids, rows, keys, values, block, cancelled)
    if logits is None:
        return None
    evictions = found.evictions
    for index, key in found.to_store:  # computed in place just now: stored as they came out
        span = plan.passages[index]
        body = slice(span.body, span.end)
        entry = PassageKV(keys[:, 0, :, body].clone(), values[:, 0, :, body].clone(), span.body)
        evictions += reuse.store.put(key, entry)
    layer_kv = list(zip(keys, values, strict=True))
    if prefix_cache is not None:
        prefix_cache.put(
            ids[:prefix_end],
            [(k[..., :prefix_end, :], v[..., :prefix_end, :]) for k, v in layer_kv],
        )
    return Prefilled(
        DynamicCache(layer_kv, config=config),
        logits,
        reused,
        found.hits,
        found.misses,
        evictions,
    )


def recompute_rows(
    loaded: Any,
    ids: Any,
    rows: list[int],
    keys: Any,
    values: Any,
    block: int,
    cancelled: Callable[[], bool],
) -> Any:
    """Run the model on the prompt tokens at `rows` (ascending, ending at the last token), each
    seeing the buffer's tokens up to its own position; the last row's logits, None if cancelled.
    """
    import torch

    model = loaded.model
    layer_keys, layer_values = list(keys), list(values)
    index = torch.tensor(rows)
    tokens = torch.tensor(ids)[index]
    logits = None
    for lo in range(0, len(rows), block):
        if cancelled():
            return None
        part = index[lo : lo + block]
        upto = int(part[-1]) + 1
        mask = (torch.arange(upto)[None, :] <= part[:, None])[None, None]
        cache = ScatterCache(layer_keys, layer_values, part, upto)
        with loaded.lock:
            out = model(
                input_ids=tokens[lo : lo + block][None],
                position_ids=part[None],
                attention_mask={"full_attention": mask},
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        logits = out.logits[0, -1]
    return logits
