"""The ragas bridge: real ragas 0.4.3 metrics on hand-made samples, and a real llama.cpp judge."""

from __future__ import annotations

import logging
import math
import socket

import pytest

from ragkit.errors import ConfigError, ModelServerError
from ragkit.eval.metrics import word_rouge_l
from ragkit.eval.ragas_bridge import (
    LLM_METRICS,
    NON_LLM_METRICS,
    RagasSample,
    default_metrics,
    ragas_scores,
)

SAME = RagasSample(
    question="What is the capital of France?",
    answer="Paris is the capital of France.",
    contexts=["Paris is the capital of France.", "Bananas are yellow."],
    reference="Paris is the capital of France.",
    reference_contexts=["Paris is the capital of France."],
)
DISJOINT = RagasSample(
    question="What binds quarks?",
    answer="the cat sat on the mat",
    contexts=["Dogs bark loudly at night."],
    reference="gluons bind quarks together",
    reference_contexts=["Gluons carry the strong force that binds quarks."],
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_non_llm_metrics_on_identical_and_disjoint_samples():
    same, disjoint = ragas_scores([SAME, DISJOINT])
    assert set(same) == set(NON_LLM_METRICS) == set(disjoint)
    assert same["non_llm_string_similarity"] == pytest.approx(1.0)
    assert same["exact_match"] == 1.0
    assert same["string_present"] == 1.0
    assert same["rouge_score"] == pytest.approx(1.0)
    assert same["bleu_score"] == pytest.approx(1.0)
    # The one relevant passage is ranked first and the reference context is found.
    assert same["non_llm_context_precision_with_reference"] == pytest.approx(1.0, abs=1e-6)
    assert same["non_llm_context_recall"] == pytest.approx(1.0)

    assert disjoint["non_llm_string_similarity"] < 0.35
    assert disjoint["exact_match"] == 0.0
    assert disjoint["string_present"] == 0.0
    assert disjoint["rouge_score"] == 0.0
    assert disjoint["bleu_score"] == 0.0
    assert disjoint["non_llm_context_precision_with_reference"] == pytest.approx(0.0, abs=1e-6)
    assert disjoint["non_llm_context_recall"] == 0.0


def test_string_presence_is_containment_not_equality():
    sample = RagasSample(question="q", answer="The tower is in Paris.", reference="Paris")
    (row,) = ragas_scores([sample], metrics=["string_present", "exact_match"])
    assert row == {"string_present": 1.0, "exact_match": 0.0}


def test_ragas_rouge_is_zero_on_chinese_where_ragkit_rouge_l_is_not():
    sample = RagasSample(question="首都？", answer="北京是中国的首都", reference="中国的首都是北京")
    (row,) = ragas_scores([sample], metrics=["rouge_score"])
    assert row["rouge_score"] == 0.0
    assert word_rouge_l(sample.answer, sample.reference) == pytest.approx(0.6)


def test_missing_inputs_give_nan_with_a_logged_reason(caplog):
    sample = RagasSample(question="q", answer="a", contexts=[], reference="")
    with caplog.at_level(logging.INFO, logger="ragkit.eval.ragas_bridge"):
        (row,) = ragas_scores([sample])
    assert all(math.isnan(v) for v in row.values())
    assert "non_llm_context_recall: sample 0 has no contexts, reference_contexts" in caplog.text
    assert "bleu_score: sample 0 has no reference" in caplog.text


def test_a_failing_metric_gives_nan_and_the_run_goes_on(caplog):
    broken = RagasSample(question="q", answer="a", reference=123)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="ragkit.eval.ragas_bridge"):
        broken_row, good_row = ragas_scores([broken, SAME], metrics=["non_llm_string_similarity"])
    assert math.isnan(broken_row["non_llm_string_similarity"])
    assert good_row["non_llm_string_similarity"] == pytest.approx(1.0)
    assert "non_llm_string_similarity: sample 0 failed" in caplog.text


def test_default_metrics_depend_on_judge_and_embedder():
    assert default_metrics(judge=False, embedder=False) == NON_LLM_METRICS
    assert "semantic_similarity" in default_metrics(judge=False, embedder=True)
    with_judge = default_metrics(judge=True, embedder=False)
    assert "faithfulness" in with_judge and "answer_relevancy" not in with_judge
    assert set(LLM_METRICS) <= set(default_metrics(judge=True, embedder=True))


def test_bad_configuration_is_rejected_before_any_scoring():
    with pytest.raises(ConfigError, match="'faithfulness' needs a judge: pass judge_url"):
        ragas_scores([SAME], metrics=["faithfulness"])
    with pytest.raises(ConfigError, match="'semantic_similarity' needs an embedder"):
        ragas_scores([SAME], metrics=["semantic_similarity"])
    with pytest.raises(ConfigError, match="unknown ragas metric 'bluescore'"):
        ragas_scores([SAME], metrics=["bluescore"])
    with pytest.raises(ValueError, match="judge_max_tokens must be >= 1, but got 0"):
        ragas_scores([SAME], judge_max_tokens=0)
    assert ragas_scores([]) == []


def test_unreachable_judge_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ModelServerError, match=f"judge at {url}/v1 cannot list its models"):
        ragas_scores([SAME], judge_url=url, metrics=["faithfulness"], judge_timeout_s=5)


def test_semantic_similarity_with_the_real_embedder(embedder):
    (same, disjoint) = ragas_scores(
        [SAME, DISJOINT], embedder=embedder, metrics=["semantic_similarity"]
    )
    assert same["semantic_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert disjoint["semantic_similarity"] < same["semantic_similarity"] - 0.3


@pytest.fixture(scope="module")
def llama_server(llama_server_url: str) -> str:
    return llama_server_url


@pytest.mark.slow
def test_faithfulness_with_a_local_llama_cpp_judge(llama_server, caplog):
    """The 0.5B judge is weak: a parse failure (NaN with a logged reason) is an accepted result."""
    sample = RagasSample(
        question="Where is the Eiffel Tower?",
        answer="The Eiffel Tower is in Paris.",
        contexts=["The Eiffel Tower is a landmark in Paris, France."],
    )
    with caplog.at_level(logging.WARNING, logger="ragkit.eval.ragas_bridge"):
        (row,) = ragas_scores(
            [sample],
            judge_url=llama_server,
            metrics=["faithfulness"],
            judge_max_tokens=256,
            judge_timeout_s=300,
        )
    value = row["faithfulness"]
    assert isinstance(value, float)
    if math.isnan(value):
        assert "ragas faithfulness: sample 0" in caplog.text
    else:
        assert 0.0 <= value <= 1.0
