"""The embedder: shapes, order, prefixes, the Runnable surface, and bf16 agreement with fp32."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.embedding import Embedder, resolve_precision
from ragkit.errors import ConfigError

ENGLISH = [
    "The cat sleeps on a warm mat by the fire.",
    "Central banks raised interest rates again this quarter.",
    "A kitten naps on a rug near the fireplace.",
    "The football match ended in a two-all draw after extra time.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Researchers trained a small language model on public domain books.",
    "The river flooded the valley after a week of heavy rain.",
    "Short.",
]


def test_documents_are_float32_unit_vectors_in_input_order(embedder):
    vectors = embedder.embed_documents(ENGLISH)
    assert vectors.shape == (len(ENGLISH), embedder.dimension) == (len(ENGLISH), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    one_by_one = np.stack([embedder.embed_documents([t])[0] for t in ENGLISH])
    # bf16 (chosen on CPUs with native bf16) rounds padded batches differently from single texts
    tolerance = 1e-4 if embedder.dtype == "float32" else 1e-2
    np.testing.assert_allclose(vectors, one_by_one, atol=tolerance)


def test_similar_meaning_scores_higher(embedder):
    cat, rates, kitten = embedder.embed_documents(ENGLISH[:3])
    assert float(cat @ kitten) > float(cat @ rates) + 0.3


def test_empty_input_gives_empty_matrix(embedder):
    assert embedder.embed_documents([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed_documents("a single string is not a list")


def test_runnable_invoke_and_batch_match_query_embedding(embedder):
    single = embedder.invoke("where do cats sleep?")
    assert isinstance(single, list) and len(single) == 384
    batched = embedder.batch(["where do cats sleep?", "interest rates"])
    np.testing.assert_allclose(batched[0], single, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_queries(["interest rates"])[0], batched[1], atol=1e-5)
    assert embedder.batch([]) == []
    assert embedder.get_name() == embedder.model_name


def test_prefixes_apply_to_their_side_only(embedder):
    prefixed = Embedder(passage_prefix="passage: ", query_prefix="query: ")
    prefixed._model = embedder.warm_up()  # share the loaded weights; the prefixes are the subject
    text = ENGLISH[0]
    plain = embedder.embed_documents([text])[0]
    as_passage = prefixed.embed_documents([text])[0]
    as_query = prefixed.embed_query(text)
    np.testing.assert_allclose(
        as_passage, embedder.embed_documents(["passage: " + text])[0], atol=1e-5
    )
    np.testing.assert_allclose(as_query, embedder.embed_query("query: " + text), atol=1e-5)
    assert float(plain @ as_passage) < 0.9999


def test_tokenizer_is_the_models_own(embedder):
    ids = embedder.tokenizer("hello world")["input_ids"]
    assert ids[0] == embedder.tokenizer.cls_token_id and len(ids) == 4
    assert embedder.max_seq_length == 256


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(batch_size=0)
    with pytest.raises(ValueError, match="precision"):
        Embedder(precision="float16")
    with pytest.raises(ConfigError, match="/no/such/model"):
        Embedder(model="/no/such/model").embed_documents(["x"])


def test_precision_resolution():
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    assert resolve_precision("auto", "cpu") in ("float32", "bfloat16")


def _bf16_agrees(embedder: Embedder, texts: list[str]) -> float:
    bf16 = Embedder(precision="bfloat16")
    assert bf16.dtype == "bfloat16"
    fp32 = embedder.embed_documents(texts)
    low = bf16.embed_documents(texts)
    assert low.dtype == np.float32
    return float(np.min(np.sum(fp32 * low, axis=1)))


@pytest.fixture(scope="module")
def crud_snippets(crud_rag_dir) -> list[str]:
    path = sorted((crud_rag_dir / "news").iterdir())[0]
    lines = path.read_text(encoding="utf-8").splitlines()[:12]
    return [line[start : start + 60] for line in lines for start in (40, 400)]


@pytest.mark.slow
def test_bfloat16_matches_float32_on_chinese_and_english(embedder, crud_snippets):
    """bf16 is only worth offering if it keeps the geometry: cosine >= 0.99 to fp32 per text.

    Kept small because CPUs without AMX/AVX512-BF16 run bf16 emulated, many times slower.
    """
    assert _bf16_agrees(embedder, ENGLISH + crud_snippets) >= 0.99
