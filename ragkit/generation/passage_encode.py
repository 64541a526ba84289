"""Computing passage KV on its own and finding it again: memory first, then a warmed folder.

A passage is encoded after a fixed context (the chat template's opening, with the system
message) rather than after whatever preceded it in the prompt that first brought it, so its
stored KV is the same whichever prompt computed it, and a prompt's answer does not depend on
which of its passages happened to be stored already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragkit.generation.passage_disk import PassageKVDisk
from ragkit.generation.passage_plan import PassageSpan, PromptPlan, body_tokens
from ragkit.generation.passage_store import PassageKV, PassageKVStore, passage_key


@dataclass(frozen=True)
class PassageReuse:
    """A generator's passage store and how it uses it: the model's name in the keys, how many
    leading tokens of each passage body are recomputed in place, and the folder a warm-up wrote
    (read when memory lacks a passage)."""

    store: PassageKVStore
    model_tag: str
    recompute_tokens: int
    disk: PassageKVDisk | None = None
    recompute_share: float = 0.0  # of the other placed tokens, those whose KV is most off
    # A passage not yet stored is computed in place, with the prompt before it in view (exact,
    # and at no extra cost: its KV is then stored as it came out), or, when False, on its own
    # after the fixed context first, so what is stored does not depend on the first prompt.
    misses_in_prompt: bool = True

    def reusable(self, span: PassageSpan) -> bool:
        """Bodies no longer than the recomputed tokens are simply computed in place."""
        return span.end - span.body > self.recompute_tokens


@dataclass
class Found:
    """Each passage's KV and whether it was stored before this prompt (None: not reusable)."""

    entries: list[tuple[PassageKV, bool] | None] = field(default_factory=list)
    # (passage index, key) of the passages computed in place, to store once the prompt is done
    to_store: list[tuple[int, str]] = field(default_factory=list)
    hits: int = 0
    misses: int = 0
    evictions: int = 0


def encode_tokens(
    loaded: Any,
    tokens: Any,
    block: int,
    cancelled: Callable[[], bool],
    after: PassageKV | None = None,
) -> PassageKV | None:
    """KV of `tokens` computed on their own in `block`-token steps, after `after`'s tokens when
    given (at the positions that follow them); None when cancelled."""
    import torch
    from transformers import DynamicCache

    model = loaded.model
    data = None
    if after is not None:
        data = [(k[None], v[None]) for k, v in zip(after.keys, after.values, strict=True)]
    cache = DynamicCache(data, config=model.config)
    start = 0 if after is None else after.tokens
    for lo in range(0, len(tokens), block):
        if cancelled():
            return None
        chunk = torch.tensor([list(tokens[lo : lo + block])])
        with loaded.lock:
            model(input_ids=chunk, cache=cache, use_cache=True, logits_to_keep=1)
    keys, values = [], []
    for layer in cache.layers:
        # Attention layers hold per-token tensors; a linear-attention layer has none to reuse.
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if k is None or v is None:
            raise ValueError(f"passage KV: {type(layer).__name__} keeps no per-token keys/values")
        keys.append(k[0, :, start:, :])
        values.append(v[0, :, start:, :])
    return PassageKV(torch.stack(keys), torch.stack(values), start)


class _Encoder:
    """Encodes the missing passages of one plan, computing the shared context once."""

    def __init__(
        self,
        loaded: Any,
        plan: PromptPlan,
        reuse: PassageReuse,
        block: int,
        cancelled: Callable[[], bool],
    ) -> None:
        self.loaded, self.plan, self.reuse = loaded, plan, reuse
        self.block, self.cancelled = block, cancelled
        self.context: PassageKV | None = None
        self.evictions = 0

    def key(self, span: PassageSpan) -> str:
        return passage_key(self.reuse.model_tag, self.plan.context, body_tokens(self.plan, span))

    def stored(self, key: str) -> PassageKV | None:
        """From memory, else from the warmed folder (then kept in memory too)."""
        entry = self.reuse.store.get(key, count=False)
        disk = self.reuse.disk
        if entry is None and disk is not None:
            entry = disk.get(key)
            if entry is not None:
                self.evictions += self.reuse.store.put(key, entry)
        return entry

    def encode(self, span: PassageSpan, key: str) -> PassageKV | None:
        """Compute and store one passage; None when cancelled."""
        if self.context is None:
            context_key = passage_key(self.reuse.model_tag, (), self.plan.context)
            self.context = self.reuse.store.get(context_key, count=False)
            if self.context is None:
                self.context = encode_tokens(
                    self.loaded, self.plan.context, self.block, self.cancelled
                )
                if self.context is None:
                    return None
                self.evictions += self.reuse.store.put(context_key, self.context)
        tokens = body_tokens(self.plan, span)
        entry = encode_tokens(self.loaded, tokens, self.block, self.cancelled, after=self.context)
        if entry is not None:
            self.evictions += self.reuse.store.put(key, entry)
        return entry


def passage_entries(
    loaded: Any, plan: PromptPlan, reuse: PassageReuse, block: int, cancelled: Callable[[], bool]
) -> Found | None:
    """Every stored passage's KV for `plan`; the missing ones are computed now on their own and
    stored, or left to be computed in the prompt (`misses_in_prompt`). None when cancelled
    (what was computed before then stays stored: it is whole and correct)."""
    encoder = _Encoder(loaded, plan, reuse, block, cancelled)
    found = Found()
    for index, span in enumerate(plan.passages):
        if not reuse.reusable(span):
            found.entries.append(None)
            continue
        key = encoder.key(span)
        entry = encoder.stored(key)
        reuse.store.record(hit=entry is not None)
        if entry is not None:
            found.hits += 1
            found.entries.append((entry, True))
            continue
        if reuse.misses_in_prompt:
            found.misses += 1
            found.entries.append(None)
            found.to_store.append((index, key))
            continue
        entry = encoder.encode(span, key)
        if entry is None:
            return None
        found.misses += 1
        found.entries.append((entry, False))
    found.evictions = encoder.evictions
    return found


def precompute(loaded: Any, plan: PromptPlan, reuse: PassageReuse, block: int) -> tuple[int, int]:
    """Make sure every passage of `plan` is stored (and written to the warm-up folder when the
    reuse has one); returns (computed now, found already)."""
    encoder = _Encoder(loaded, plan, reuse, block, lambda: False)
    disk = reuse.disk
    computed = present = 0
    for span in plan.passages:
        if not reuse.reusable(span):
            continue
        key = encoder.key(span)
        if disk is not None and key in disk:
            present += 1
            continue
        entry = reuse.store.get(key, count=False)
        if entry is None:
            entry = encoder.encode(span, key)
            computed += 1
        else:
            present += 1
        if entry is not None and disk is not None:
            disk.put(key, entry)
    return computed, present
