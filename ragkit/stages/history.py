"""Conversational search without a model call: a follow-up is searched with the questions the
user asked before it, weighted so that an earlier question only counts where the new one agrees.

A follow-up such as "谁被扣押了？" or "When was it founded?" names no subject; the user's earlier
questions usually do. But conversations also change subject without saying so, and then the
earlier questions point at the wrong article. Pasting them into the query (`HistoryQuery`)
helps the first case and hurts the second, because the earlier questions' words outnumber the
new question's.

`HistorySearch` therefore searches the question alone and, for each of the last `turns` user
questions, that question joined with the new one, and sums each chunk's scores over the lists:
the question's own list at weight 1, the joint ones at `weight` × `decay` per step back. A
passage the new question supports scores in every list; a passage only the old subject supports
scores in the joint lists alone, at their lower weight, so it wins only when the question
itself has nothing better: a follow-up without a subject still finds the old article, and a
question with a subject of its own keeps its own hits. The weights are fixed defaults chosen on
one corpus slice and checked on the others (benchmarks/results/crud_retrieval_slices.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import Field

from ragkit.retrieval import Retriever, as_query
from ragkit.runnable import BatchedRunnable
from ragkit.types import Query, Retrieved


def user_turns(query: Query) -> list[str]:
    """The user's earlier questions: short and on topic, unlike long assistant answers."""
    return [content for role, content in query.history if role == "user" and content.strip()]


class HistoryQuery(BatchedRunnable[Query | str, list[str]]):
    """Query → one search text: the last `turns` user questions, then the question.

    The plain form of conversational search, for any pipeline as a rewriter; it lets an old
    subject outweigh a new one, which `HistorySearch` avoids.
    """

    turns: int = Field(default=3, gt=0)

    def _run_batch(
        self, inputs: list[Query | str], config: RunnableConfig | list[RunnableConfig] | None = None
    ) -> list[list[str]]:
        return [[self.search_text(as_query(x))] for x in inputs]

    def search_text(self, query: Query) -> str:
        return "\n".join([*user_turns(query)[-self.turns :], query.question])


class HistorySearch(Retriever):
    """Wraps a retriever: a question with history is searched alone and joined with each of the
    last `turns` earlier user questions, and the score-normalised lists are summed (see the
    module docstring). A question without history is passed straight to `retriever`."""

    retriever: Any
    turns: int = Field(default=3, gt=0)
    weight: float = Field(default=0.5, ge=0)
    decay: float = Field(default=0.5, gt=0, le=1)
    candidates: int = Field(default=100, gt=0)

    def search_texts(self, query: Query) -> list[tuple[str, float]]:
        """(search text, weight): the question alone, then each earlier question joined with it,
        most recent first."""
        texts = [(query.question, 1.0)]
        earlier = user_turns(query)[-self.turns :]
        for age, turn in enumerate(reversed(earlier)):
            texts.append((f"{turn}\n{query.question}", self.weight * self.decay**age))
        return texts

    def _retrieve(self, queries: list[Query], top_k: int) -> list[list[Retrieved]]:
        plans = [self.search_texts(q) if user_turns(q) else [] for q in queries]
        searches = [
            dataclasses.replace(q, question=text)
            for q, plan in zip(queries, plans, strict=True)
            for text, _ in plan
        ]
        depth = max(self.candidates, top_k)
        found = _search(self.retriever, searches, depth) if searches else []
        plain = [q for q, plan in zip(queries, plans, strict=True) if not plan]
        direct = iter(_search(self.retriever, plain, top_k) if plain else [])
        out, start = [], 0
        for plan in plans:
            if not plan:
                out.append(next(direct)[:top_k])
                continue
            lists = found[start : start + len(plan)]
            start += len(plan)
            out.append(_combine(lists, [w for _, w in plan], top_k))
        return out


def _search(retriever: Any, queries: list[Query], depth: int) -> list[list[Retrieved]]:
    if isinstance(retriever, Retriever):
        return retriever.retrieve(queries, top_k=depth)
    return retriever.batch(queries)


def _combine(lists: list[list[Retrieved]], weights: list[float], top_k: int) -> list[Retrieved]:
    """Weighted sum of each chunk's scores over the lists. The scores stay as the retriever gave
    them: the joint searches contain the question, so on one scale a passage the question
    itself supports gains from every list, and a passage only the old subject supports gains
    from the joint lists alone, at their lower weight. A chunk missing from a list counts as
    that list's lowest score (a cut-off list says no more than that)."""
    first: dict[str, Retrieved] = {}
    for hits in lists:
        for hit in hits:
            first.setdefault(hit.chunk.id, hit)
    total = dict.fromkeys(first, 0.0)
    for hits, weight in zip(lists, weights, strict=True):
        if not hits:
            continue
        floor = min(h.score for h in hits)
        scores = {h.chunk.id: h.score for h in hits}
        for cid in total:
            total[cid] += weight * scores.get(cid, floor)
    # Stable sort: ties keep the order of the question's own list, then the joint lists'.
    order = sorted(first, key=lambda cid: -total[cid])[:top_k]
    return [
        Retrieved(chunk=first[cid].chunk, score=total[cid], rank=rank, source="history")
        for rank, cid in enumerate(order, start=1)
    ]
