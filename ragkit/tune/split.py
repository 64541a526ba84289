"""The tuning / held-back split: a config is chosen on one part and reported on the other, so
a winner that only fits the questions it was tuned on shows up as such."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ragkit.eval.tasks import EvalItem


def group_key(item: EvalItem) -> str:
    """Questions about the same story stay on one side: CRUD-RAG asks several per article."""
    return str(item.metadata.get("factoid_id") or item.metadata.get("gold_chunk") or item.id)


def split_items(
    items: Sequence[EvalItem], holdout: float, seed: int
) -> tuple[list[EvalItem], list[EvalItem]]:
    """(tuning, held back): whole groups drawn with `seed` until `holdout` of the items are
    held back; the same items and seed always give the same split, in file order."""
    if not 0 < holdout < 1:
        raise ValueError(f"--holdout must be between 0 and 1, got {holdout}")
    if len(items) < 2:
        raise ValueError(f"a tuning split needs at least 2 questions, got {len(items)}")
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(group_key(item), []).append(item.id)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    wanted = max(1, round(holdout * len(items)))
    held: set[str] = set()
    for key in order:
        if len(held) >= wanted or len(held) + len(groups[key]) >= len(items):
            break
        held.update(groups[key])
    if not held:  # one group holds everything: fall back to splitting single questions
        ids = [i.id for i in items]
        random.Random(seed).shuffle(ids)
        held = set(ids[:wanted])
    return [i for i in items if i.id not in held], [i for i in items if i.id in held]
