"""The built-in generator and retriever kinds: what `kind:` may name in a pipeline YAML's
`generator` and `retriever` sections (the stage kinds register in `ragkit.stages.factory`).

Each kind is one `register` call: its maker, its typed options (the section keys it reads,
declared once on the section in `ragkit.spec`) and what it uses. A user's own component needs
no change here at all (name it by import path, or call `register` from your code).
"""

from __future__ import annotations

from typing import Any

from ragkit.errors import ConfigError
from ragkit.registry import GENERATORS, RETRIEVERS, Parts, section_options
from ragkit.spec import GeneratorSpec, RetrieverSpec

__all__ = ["GENERATORS", "RETRIEVERS"]

_SAMPLING = ("model", "max_new_tokens", "temperature", "max_concurrency")
LocalOptions = section_options(
    GeneratorSpec,
    "LocalOptions",
    (
        *_SAMPLING,
        "prefix_cache_mb",
        "kv_reuse",
        "passage_cache_mb",
        "passage_recompute_tokens",
        "passage_recompute_share",
        "passage_misses",
        "passage_cache_dir",
    ),
)
OpenAIOptions = section_options(
    GeneratorSpec,
    "OpenAIOptions",
    (*_SAMPLING, "base_url", "api_key", "timeout_s"),
    required={"base_url": ""},
)
VLLMOptions = section_options(GeneratorSpec, "VLLMOptions", _SAMPLING, required={"model": ""})
ScriptedOptions = section_options(
    GeneratorSpec, "ScriptedOptions", ("max_new_tokens", "temperature")
)
DenseOptions = section_options(RetrieverSpec, "DenseOptions", ("top_k",))
BM25Options = section_options(RetrieverSpec, "BM25Options", ("top_k", "lexical"))
HybridOptions = section_options(RetrieverSpec, "HybridOptions", ("top_k", "candidate_k", "lexical"))

# ---------------------------------------------------------------- generators


def _concurrency(spec: Any) -> dict[str, int]:
    """The spec's `max_concurrency` when set; otherwise each backend keeps its own default."""
    return {} if spec.max_concurrency is None else {"max_concurrency": spec.max_concurrency}


@GENERATORS.register("local", options=LocalOptions, uses=("model",))
def _local(spec: Any, parts: Parts) -> Any:
    """The packaged model (or a local transformers model) in this process."""
    from ragkit.generation.local import LocalGenerator

    return LocalGenerator(
        model=spec.model or "packaged",
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        prefix_cache_bytes=spec.prefix_cache_mb * 2**20,
        kv_reuse=spec.kv_reuse,
        passage_cache_bytes=spec.passage_cache_mb * 2**20,
        passage_recompute_tokens=spec.passage_recompute_tokens,
        passage_recompute_share=spec.passage_recompute_share,
        passage_misses=spec.passage_misses,
        passage_cache_dir=spec.passage_cache_dir,
        **_concurrency(spec),
    )


@GENERATORS.register("openai", options=OpenAIOptions)
def _openai(spec: Any, parts: Parts) -> Any:
    """An OpenAI-compatible server at `base_url` (vLLM, llama.cpp, a hosted API)."""
    if not spec.base_url:
        raise ConfigError("generator.base_url: required when generator.kind is 'openai'")
    from ragkit.generation.openai_compat import OpenAICompatibleGenerator

    return OpenAICompatibleGenerator(
        base_url=spec.base_url,
        model=spec.model,
        api_key=spec.api_key,
        timeout_s=spec.timeout_s,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        **_concurrency(spec),
    )


@GENERATORS.register("vllm", options=VLLMOptions, uses=("model",))
def _vllm(spec: Any, parts: Parts) -> Any:
    """vLLM's engine in this process (a GPU)."""
    if not spec.model:
        raise ConfigError("generator.model: required when generator.kind is 'vllm'")
    from ragkit.generation.vllm import VLLMGenerator

    return VLLMGenerator(
        model=spec.model,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        **_concurrency(spec),
    )


@GENERATORS.register("scripted", options=ScriptedOptions)
def _scripted(spec: Any, parts: Parts) -> Any:
    """Rule-based answers, no model: for tests and dry runs of a pipeline's plumbing."""
    from ragkit.generation.scripted import ScriptedGenerator

    return ScriptedGenerator(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)


# ---------------------------------------------------------------- retrievers


@RETRIEVERS.register("dense", options=DenseOptions, uses=("embedder", "store"))
def _dense(spec: Any, parts: Parts) -> Any:
    """Nearest stored vectors to the embedded query."""
    from ragkit.retrieval import DenseRetriever

    return DenseRetriever(store=parts.store, embedder=parts.embedder, top_k=spec.top_k)


@RETRIEVERS.register("bm25", options=BM25Options, uses=("store",))
def _bm25(spec: Any, parts: Parts) -> Any:
    """BM25 over the stored chunks' text (jieba words, optionally character bigrams)."""
    from ragkit.retrieval import BM25Retriever

    return BM25Retriever(parts.store, top_k=spec.top_k, terms=spec.lexical)


@RETRIEVERS.register("hybrid", options=HybridOptions, uses=("embedder", "store"))
def _hybrid(spec: Any, parts: Parts) -> Any:
    """Dense and BM25 each fetch `candidate_k`, fused to `top_k`."""
    from ragkit.retrieval import HybridRetriever

    wide = spec.model_copy(update={"top_k": spec.candidate_k})
    return HybridRetriever(retrievers=[_dense(wide, parts), _bm25(wide, parts)], top_k=spec.top_k)
