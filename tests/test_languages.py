"""The store's language tally, the warning for an English-only embedder over Chinese text, and
the mix in `ragkit info`."""

from __future__ import annotations

import warnings

import pytest
from typer.testing import CliRunner

from ragkit import languages
from ragkit.index.store import ChromaStore
from ragkit.retrieval import DenseRetriever
from ragkit.types import Chunk

ZH = [
    "西安市发放了500万元体育类电子消费券，市民可在全市173家体育场馆使用。",
    "新建的高速铁路全长三百公里，连接两座省会城市，预计年底通车。",
    "福建的茶农今年春茶产量增加，白茶价格稳中有升。",
]
EN = ["The Eiffel Tower in Paris was finished in 1889 for the World's Fair."]


def _chunks(texts: list[str], prefix: str) -> list[Chunk]:
    return [
        Chunk(f"{prefix}{i}:0", f"{prefix}{i}", t, 0, len(t), {"source": f"{prefix}{i}.txt"})
        for i, t in enumerate(texts)
    ]


def test_language_of_reads_mixed_news_as_chinese():
    assert languages.language_of("华为Mate 60在2023年8月29日开售，售价6999元。") == "zh"
    assert languages.language_of("Kelpie Robotics builds underwater machines.") == "en"
    assert languages.language_of("2023-07-28 16:40") == ""
    assert languages.describe({"zh": 3, "en": 1}) == "zh 75%, en 25%"
    assert languages.describe({}) == "not recorded"


@pytest.fixture()
def zh_store(tmp_path, embedder) -> ChromaStore:
    store = ChromaStore(tmp_path / "chroma", "mixed", embedding_model=embedder.model_name)
    for texts, prefix in ((ZH, "zh"), (EN, "en")):
        chunks = _chunks(texts, prefix)
        store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]))
    return store


def test_the_store_keeps_a_tally_of_what_it_was_given(zh_store):
    assert languages.read_mix(zh_store.metadata) == {"zh": 3, "en": 1}
    reopened = ChromaStore(zh_store.location, "mixed")
    assert languages.read_mix(reopened.metadata) == {"zh": 3, "en": 1}


def test_english_only_embedder_over_chinese_warns_once(zh_store, embedder):
    dense = DenseRetriever(store=zh_store, embedder=embedder, top_k=2)
    with pytest.warns(languages.LanguageMismatchWarning, match="pipeline 'best'") as caught:
        dense.invoke("哪个城市发放了消费券？")
    assert "zh 75%" in str(caught[0].message)
    again = DenseRetriever(store=zh_store, embedder=embedder, top_k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", languages.LanguageMismatchWarning)
        again.invoke("高铁多长？")  # the same collection and model: no second warning


def test_no_warning_for_a_multilingual_embedder_or_an_english_index(tmp_path, embedder):
    assert languages.check_embedder(object(), "intfloat/multilingual-e5-small") is None
    store = ChromaStore(tmp_path / "en", "english", embedding_model=embedder.model_name)
    chunks = _chunks(EN * 3, "en")
    store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", languages.LanguageMismatchWarning)
        DenseRetriever(store=store, embedder=embedder, top_k=1).invoke("When was it finished?")


def test_info_shows_the_language_mix(zh_store):
    from ragkit.cli import app

    result = CliRunner().invoke(app, ["info", "--store", zh_store.location])
    assert result.exit_code == 0, result.output
    assert "mixed: 4 chunks" in result.output and "languages zh 75%, en 25%" in result.output
