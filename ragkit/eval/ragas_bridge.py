"""Bridge to ragas 0.4.3: its string and context metrics always, its LLM-judged metrics only
against an OpenAI-compatible judge server (llama.cpp, vLLM, ragkit's own endpoint).

ragas is imported here and nowhere else. Nothing here needs an OpenAI key or the internet:
ragas' usage tracking is switched off unless the caller set RAGAS_DO_NOT_TRACK, and the judge
is whatever URL the caller names. One failing metric on one item gives NaN and a log line; it
never stops the run, because a weak judge failing to produce valid JSON is routine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ragkit.errors import ConfigError, ModelServerError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RagasSample:
    """One evaluated item in ragas' terms: what was asked, answered, retrieved and expected."""

    question: str
    answer: str
    contexts: Sequence[str] = ()
    reference: str = ""
    reference_contexts: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class _Spec:
    needs: tuple[str, ...]  # sample fields that must be non-empty for the metric to mean anything
    uses_judge: bool = False
    uses_embedder: bool = False


_SPECS: dict[str, _Spec] = {
    "non_llm_context_precision_with_reference": _Spec(("contexts", "reference_contexts")),
    "non_llm_context_recall": _Spec(("contexts", "reference_contexts")),
    "non_llm_string_similarity": _Spec(("reference",)),
    "bleu_score": _Spec(("reference",)),
    "rouge_score": _Spec(("reference",)),
    "exact_match": _Spec(("reference",)),
    "string_present": _Spec(("reference",)),
    "semantic_similarity": _Spec(("reference",), uses_embedder=True),
    "faithfulness": _Spec(("question", "answer", "contexts"), uses_judge=True),
    "answer_relevancy": _Spec(("question", "answer"), uses_judge=True, uses_embedder=True),
    "context_precision": _Spec(("question", "reference", "contexts"), uses_judge=True),
    "context_recall": _Spec(("question", "reference", "contexts"), uses_judge=True),
}

NON_LLM_METRICS = tuple(n for n, s in _SPECS.items() if not (s.uses_judge or s.uses_embedder))
EMBEDDING_METRICS = tuple(n for n, s in _SPECS.items() if s.uses_embedder and not s.uses_judge)
LLM_METRICS = tuple(n for n, s in _SPECS.items() if s.uses_judge)

Scorer = Callable[[RagasSample], Awaitable[Any]]
T = TypeVar("T")


def default_metrics(*, judge: bool, embedder: bool) -> tuple[str, ...]:
    """Every metric the given components can compute, in a stable order."""
    return tuple(
        name
        for name, spec in _SPECS.items()
        if (judge or not spec.uses_judge) and (embedder or not spec.uses_embedder)
    )


def _judge_base_url(url: str) -> str:
    """OpenAI clients expect the `/v1` root; accept a bare `http://host:port` as well."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def _resolve_judge_model(base_url: str, model: str | None, api_key: str, timeout: float) -> str:
    """Check the judge answers and, if no model was named, take the first one it serves."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
    try:
        served = [m.id for m in client.models.list().data]
    except Exception as exc:
        raise ModelServerError(
            f"judge at {base_url} cannot list its models: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        client.close()
    if model is not None:
        return model
    if not served:
        raise ModelServerError(f"judge at {base_url} serves no model; pass judge_model")
    return served[0]


def _ragas_embeddings(embedder: Any) -> Any:
    """Wrap a ragkit embedder (`embed_documents(list[str])`) in ragas' embedding interface."""
    from ragas.embeddings.base import BaseRagasEmbedding

    class _Embeddings(BaseRagasEmbedding):
        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embed_texts([text])[0]

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embed_text(text)

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in embedder.embed_documents(list(texts))]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embed_texts(texts)

    return _Embeddings()


def _build_scorers(names: Sequence[str], llm: Any, embeddings: Any) -> dict[str, Scorer]:
    """One async scorer per metric name, each taking a RagasSample."""
    from ragas.dataset_schema import SingleTurnSample
    from ragas.metrics import collections as rc

    with warnings.catch_warnings():
        # The two non-LLM context metrics exist only in ragas' older metric API.
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall

    def legacy(metric: Any) -> Scorer:
        async def score(s: RagasSample) -> Any:
            sample = SingleTurnSample(
                user_input=s.question,
                response=s.answer,
                retrieved_contexts=list(s.contexts),
                reference_contexts=list(s.reference_contexts),
                reference=s.reference,
            )
            return await metric.single_turn_ascore(sample)

        return score

    def against_reference(metric: Any) -> Scorer:
        return lambda s: metric.ascore(reference=s.reference, response=s.answer)

    def make(name: str) -> Scorer:
        if name == "non_llm_context_precision_with_reference":
            return legacy(NonLLMContextPrecisionWithReference())
        if name == "non_llm_context_recall":
            return legacy(NonLLMContextRecall())
        if name == "non_llm_string_similarity":
            return against_reference(rc.NonLLMStringSimilarity())
        if name == "bleu_score":
            return against_reference(rc.BleuScore())
        if name == "rouge_score":
            return against_reference(rc.RougeScore())
        if name == "exact_match":
            return against_reference(rc.ExactMatch())
        if name == "string_present":
            return against_reference(rc.StringPresence())
        if name == "semantic_similarity":
            return against_reference(rc.SemanticSimilarity(embeddings=embeddings))
        if name == "faithfulness":
            faithfulness = rc.Faithfulness(llm=llm)
            return lambda s: faithfulness.ascore(
                user_input=s.question, response=s.answer, retrieved_contexts=list(s.contexts)
            )
        if name == "answer_relevancy":
            relevancy = rc.AnswerRelevancy(llm=llm, embeddings=embeddings)
            return lambda s: relevancy.ascore(user_input=s.question, response=s.answer)
        if name == "context_precision":
            precision = rc.ContextPrecisionWithReference(llm=llm)
            return lambda s: precision.ascore(
                user_input=s.question, reference=s.reference, retrieved_contexts=list(s.contexts)
            )
        if name == "context_recall":
            recall = rc.ContextRecall(llm=llm)
            return lambda s: recall.ascore(
                user_input=s.question, retrieved_contexts=list(s.contexts), reference=s.reference
            )
        raise ConfigError(f"no ragas scorer for metric {name!r}")

    return {name: make(name) for name in names}


def _as_float(value: Any) -> tuple[float, str | None]:
    """ragas returns floats from old metrics and MetricResult objects from new ones."""
    reason = getattr(value, "reason", None)
    value = getattr(value, "value", value)
    try:
        return float(value), reason
    except (TypeError, ValueError):
        return math.nan, f"non-numeric result {value!r}" + (f" ({reason})" if reason else "")


async def _score_one(index: int, name: str, scorer: Scorer, sample: RagasSample) -> float:
    missing = [f for f in _SPECS[name].needs if not getattr(sample, f)]
    if missing:
        log.info("ragas %s: sample %d has no %s; scored NaN", name, index, ", ".join(missing))
        return math.nan
    try:
        value, reason = _as_float(await scorer(sample))
    except Exception as exc:  # a metric failure must not end the whole evaluation
        log.warning("ragas %s: sample %d failed: %s: %.300s", name, index, type(exc).__name__, exc)
        return math.nan
    if math.isnan(value):
        log.warning("ragas %s: sample %d gave NaN%s", name, index, f": {reason}" if reason else "")
    return value


async def _score_all(
    samples: Sequence[RagasSample],
    names: Sequence[str],
    judge: tuple[str, str, str, int, float] | None,
    embedder: Any,
) -> list[dict[str, float]]:
    llm = None
    client = None
    if judge is not None:
        from openai import AsyncOpenAI
        from ragas.llms import llm_factory

        base_url, model, api_key, max_tokens, timeout = judge
        client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        llm = llm_factory(model, client=client, max_tokens=max_tokens)
    embeddings = _ragas_embeddings(embedder) if embedder is not None else None
    try:
        scorers = _build_scorers(names, llm, embeddings)
        rows = []
        for i, sample in enumerate(samples):
            rows.append({n: await _score_one(i, n, scorers[n], sample) for n in names})
        return rows
    finally:
        if client is not None:
            await client.close()


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from code that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ragas_scores(
    samples: Sequence[RagasSample],
    judge_url: str | None = None,
    judge_model: str | None = None,
    embedder: Any = None,
    *,
    metrics: Sequence[str] | None = None,
    judge_api_key: str | None = None,
    judge_max_tokens: int = 512,
    judge_timeout_s: float = 300.0,
) -> list[dict[str, float]]:
    """ragas metrics for each sample, as `{metric name: value}` with NaN where one failed.

    By default every metric the components allow: the non-LLM ones always, semantic
    similarity with an `embedder`, faithfulness and context precision/recall with a judge, and
    answer relevancy with both. The judge is an OpenAI-compatible server at `judge_url`; its
    first served model is used when `judge_model` is None. Naming an LLM metric in `metrics`
    without a judge (or an embedding metric without an embedder) is a ConfigError.
    """
    has_judge = judge_url is not None
    has_embedder = embedder is not None
    if metrics is None:
        names = default_metrics(judge=has_judge, embedder=has_embedder)
    else:
        names = tuple(metrics)
        for name in names:
            spec = _SPECS.get(name)
            if spec is None:
                raise ConfigError(f"unknown ragas metric {name!r}; known: {', '.join(_SPECS)}")
            if spec.uses_judge and not has_judge:
                raise ConfigError(f"ragas metric {name!r} needs a judge: pass judge_url")
            if spec.uses_embedder and not has_embedder:
                raise ConfigError(f"ragas metric {name!r} needs an embedder: pass embedder")
    if has_embedder and not hasattr(embedder, "embed_documents"):
        raise ConfigError(
            f"embedder {type(embedder).__name__} has no embed_documents(list[str]) method"
        )
    if judge_max_tokens < 1:
        raise ValueError(f"judge_max_tokens must be >= 1, but got {judge_max_tokens}")
    if judge_timeout_s <= 0:
        raise ValueError(f"judge_timeout_s must be > 0, but got {judge_timeout_s}")
    if not samples:
        return []

    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    judge = None
    if judge_url is not None and any(_SPECS[n].uses_judge for n in names):
        base_url = _judge_base_url(judge_url)
        api_key = judge_api_key if judge_api_key is not None else "not-needed"
        model = _resolve_judge_model(base_url, judge_model, api_key, judge_timeout_s)
        judge = (base_url, model, api_key, judge_max_tokens, judge_timeout_s)
    return _run_sync(_score_all(samples, names, judge, embedder))
