"""Rerankers: re-score a retriever's shortlist for one query and re-order it.

Each takes `{"query": str, "retrieved": list[Retrieved]}` and returns the same hits in a new
order with new scores, `rank` from 1 and `source` naming the reranker. `batch` scores every
(query, passage) pair of the batch in one model call. Sorting is stable, so ties keep the
retriever's order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ragkit.embedding.e5 import E5Embedder
from ragkit.models import resolve_embedding_model
from ragkit.retrieval.bm25 import bm25_scores
from ragkit.runnable import BatchedRunnable
from ragkit.text import is_cjk
from ragkit.types import Prompt, Retrieved

RerankInput = dict[str, Any]
Pairs = list[tuple[str, list[Retrieved]]]


class _Reranker(BatchedRunnable[RerankInput, list[Retrieved]]):
    """Shared Runnable plumbing; a subclass implements `_scores` for a whole batch of lists."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_passage_chars: int = 1000

    def _run_batch(
        self, inputs: list[RerankInput], config: list[RunnableConfig] | None = None
    ) -> list[list[Retrieved]]:
        pairs: Pairs = [(_query_text(x), list(x.get("retrieved") or ())) for x in inputs]
        todo = [(q, hits) for q, hits in pairs if hits]
        scores = iter(self._scores(todo, config[0] if config else None) if todo else [])
        return [self._order(hits, next(scores)) if hits else [] for _, hits in pairs]

    def _order(self, hits: list[Retrieved], scores: Sequence[float]) -> list[Retrieved]:
        order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
        return [
            dataclasses.replace(hits[i], score=float(scores[i]), rank=rank, source=self.source)
            for rank, i in enumerate(order, start=1)
        ]

    def _text(self, hit: Retrieved) -> str:
        return hit.chunk.text[: self.max_passage_chars]

    @property
    def source(self) -> str:
        raise NotImplementedError

    def _scores(self, pairs: Pairs, config: RunnableConfig | None) -> list[list[float]]:
        raise NotImplementedError


def _query_text(value: RerankInput) -> str:
    if not isinstance(value, dict) or "query" not in value:
        raise TypeError(f"a reranker takes {{'query': str, 'retrieved': [...]}}, got {value!r}")
    query = value["query"]
    return str(getattr(query, "question", query))


class CrossEncoderReranker(_Reranker):
    """Scores (query, passage) pairs jointly with a sentence-transformers CrossEncoder.

    `model` is a hub name or a local folder; no cross-encoder weights ship offline, so the
    offline default pipelines use the embedder or RRF rerankers instead.
    """

    model: str
    batch_size: int = Field(32, gt=0)
    max_length: int | None = 512

    _model: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> CrossEncoderReranker:
        if not self.model:
            raise ValueError("model must name a cross-encoder (hub name or folder), got ''")
        return self

    @property
    def source(self) -> str:
        return "cross-encoder"

    def warm_up(self) -> Any:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(
                resolve_embedding_model(self.model), device="cpu", max_length=self.max_length
            )
        return self._model

    def _scores(self, pairs: Pairs, config: RunnableConfig | None) -> list[list[float]]:
        flat = [(q, self._text(h)) for q, hits in pairs for h in hits]
        scores = self.warm_up().predict(flat, batch_size=self.batch_size, show_progress_bar=False)
        return _split([float(s) for s in scores], pairs)


class EmbedderReranker(_Reranker):
    """Cosine similarity from a (usually stronger, slower) embedder over the shortlist only.

    `embedder` needs `embed_documents(texts)` and `embed_queries(texts)` (or `embed_query`);
    the default is the packaged multilingual e5 (`ragkit.embedding.e5.E5Embedder`). On CRUD-RAG
    it did not beat BM25 alone, so measure before relying on it.
    """

    embedder: Any = None

    _default: Any = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return "embedder"

    def _embedder(self) -> Any:
        if self.embedder is not None:
            return self.embedder
        if self._default is None:
            self._default = E5Embedder()
        return self._default

    def _scores(self, pairs: Pairs, config: RunnableConfig | None) -> list[list[float]]:
        import numpy as np

        embedder = self._embedder()
        queries = [q for q, _ in pairs]
        if hasattr(embedder, "embed_queries"):
            q_vecs = np.asarray(embedder.embed_queries(queries), dtype=np.float32)
        else:
            q_vecs = np.asarray([embedder.embed_query(q) for q in queries], dtype=np.float32)
        p_vecs = np.asarray(
            embedder.embed_documents([self._text(h) for _, hits in pairs for h in hits]),
            dtype=np.float32,
        )
        q_vecs = q_vecs / np.maximum(np.linalg.norm(q_vecs, axis=1, keepdims=True), 1e-12)
        p_vecs = p_vecs / np.maximum(np.linalg.norm(p_vecs, axis=1, keepdims=True), 1e-12)
        out, start = [], 0
        for q_vec, (_, hits) in zip(q_vecs, pairs, strict=True):
            out.append([float(x) for x in p_vecs[start : start + len(hits)] @ q_vec])
            start += len(hits)
        return out


JUDGE_EN = (
    "Passage:\n{passage}\n\nQuestion: {question}\n\n"
    "Does the passage contain the answer to the question? Reply with yes or no only."
)
JUDGE_ZH = (
    "资料：\n{passage}\n\n问题：{question}\n\n这段资料里有这个问题的答案吗？只回答“是”或“否”。"
)
_YES = re.compile(r"^\W*(yes|是|有|对|包含)", re.IGNORECASE)


class LLMJudgeReranker(_Reranker):
    """The generator judges each passage pointwise: does it answer the question?

    A generator exposing `choice_logprobs(prompts, choices) -> list[list[float]]` is scored by
    the log-probability margin of "yes" over "no"; otherwise its short reply is read as yes
    (1.0) or no (0.0), and the stable sort keeps the retriever's order within each group. All
    pairs of a batch go to the generator as one batch. Slow (~2 pairs/s on 2 CPU cores), so
    keep `candidates` small.
    """

    generator: Runnable
    template: str | None = None
    max_new_tokens: int = Field(3, gt=0)

    @model_validator(mode="after")
    def _check(self) -> LLMJudgeReranker:
        if self.template is not None:
            try:
                self.template.format(passage="p", question="q")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"the judge template may use {{passage}} and {{question}}; got "
                    f"{self.template!r} ({exc})"
                ) from exc
        return self

    @property
    def source(self) -> str:
        return "llm-judge"

    def prompt(self, question: str, passage: str) -> Prompt:
        template = self.template
        if template is None:
            template = JUDGE_ZH if is_cjk(question) else JUDGE_EN
        return Prompt.plain(template.format(passage=passage, question=question))

    def _scores(self, pairs: Pairs, config: RunnableConfig | None) -> list[list[float]]:
        prompts = [self.prompt(q, self._text(h)) for q, hits in pairs for h in hits]
        choice_logprobs = getattr(self.generator, "choice_logprobs", None)
        if not callable(choice_logprobs):
            answers = self.generator.batch(prompts, config, max_new_tokens=self.max_new_tokens)
            return _split([1.0 if _YES.match(a.text.strip()) else 0.0 for a in answers], pairs)
        chinese = [is_cjk(q) for q, hits in pairs for _ in hits]
        flat = [0.0] * len(prompts)
        for zh, choices in ((False, ["yes", "no"]), (True, ["是", "否"])):
            idx = [i for i, c in enumerate(chinese) if c == zh]
            if idx:
                logprobs = choice_logprobs([prompts[i] for i in idx], choices)
                for i, lp in zip(idx, logprobs, strict=True):
                    flat[i] = float(lp[0] - lp[1])
        return _split(flat, pairs)


class RRFReranker(_Reranker):
    """Reciprocal rank fusion over the shortlist: the retriever's order, a BM25 order of the
    candidates (jieba words for Chinese) and, with an `embedder`, a cosine order.

    A cheap hybrid for a pipeline whose first stage is one retriever; corpus-wide fusion of
    dense and BM25 retrieval is `retriever.kind: hybrid`.
    """

    embedder: Any = None
    k: int = Field(60, gt=0)
    k1: float = 1.2
    b: float = 0.75

    @property
    def source(self) -> str:
        return "rrf"

    def _scores(self, pairs: Pairs, config: RunnableConfig | None) -> list[list[float]]:
        orders = [
            [bm25_scores(q, [self._text(h) for h in hits], self.k1, self.b)] for q, hits in pairs
        ]
        if self.embedder is not None:
            cosine = EmbedderReranker(embedder=self.embedder)._scores(pairs, config)
            for row, scores in zip(orders, cosine, strict=True):
                row.append(scores)
        out = []
        for (_, hits), rows in zip(pairs, orders, strict=True):
            fused = [1.0 / (self.k + rank) for rank in range(1, len(hits) + 1)]
            for scores in rows:
                for rank, i in enumerate(sorted(range(len(hits)), key=lambda j: -scores[j]), 1):
                    fused[i] += 1.0 / (self.k + rank)
            out.append(fused)
        return out


def _split(flat: list[float], pairs: Pairs) -> list[list[float]]:
    out, start = [], 0
    for _, hits in pairs:
        out.append(flat[start : start + len(hits)])
        start += len(hits)
    return out
