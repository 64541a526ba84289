"""The `history` follow-up stage with the real BM25 over real corpora: a follow-up that lacks its
subject is found through the earlier questions, and a question about a new subject is not
pulled back to the old one."""

from __future__ import annotations

import pytest

from ragkit.index.chunking import TokenChunker
from ragkit.index.loaders import load_documents
from ragkit.retrieval import BM25Retriever
from ragkit.stages.history import HistoryQuery, HistorySearch
from ragkit.types import Query


@pytest.fixture(scope="module")
def bundled_bm25(bundled_corpus) -> BM25Retriever:
    chunker = TokenChunker(chunk_tokens=96, overlap_tokens=16)
    chunks = [c for d in load_documents([bundled_corpus]) for c in chunker.invoke(d)]
    return BM25Retriever.from_chunks(chunks, top_k=5, terms="words+bigrams")


def _asked(*questions: str) -> tuple[tuple[str, str], ...]:
    return tuple(("user", q) for q in questions)


def _rank_of(hits, needle: str) -> int | None:
    return next((h.rank for h in hits if needle in h.chunk.text), None)


def test_a_follow_up_without_its_subject_is_found_through_the_history(bundled_bm25):
    search = HistorySearch(retriever=bundled_bm25, top_k=5)
    asked = _asked("Tell me about the Brinewell Desalination Plant.")
    follow_up = Query("When did it open?", asked)
    alone = bundled_bm25.invoke(Query(follow_up.question))
    with_history = search.invoke(follow_up)
    assert _rank_of(alone, "opened on 14 March 2016") is None
    assert _rank_of(with_history, "opened on 14 March 2016") in (1, 2)
    assert all(h.source == "history" for h in with_history)


def test_a_new_subject_keeps_its_own_hits_when_the_history_is_about_another(bundled_bm25):
    history = _asked(
        "How much fresh water does the Brinewell Desalination Plant produce per day?",
        "How far out into the bay does the plant's intake pipe run?",
        "What did the desalination plant cost to build?",
    )
    question = "Who founded Varrow Point in 1847?"
    alone = bundled_bm25.invoke(Query(question))
    switched = HistorySearch(retriever=bundled_bm25, top_k=5).invoke(Query(question, history))
    assert _rank_of(alone, "Elias Marrick") == 1
    assert _rank_of(switched, "Elias Marrick") == 1
    # Pasting the old questions into the query lets them outweigh the new one.
    pasted = bundled_bm25.invoke(HistoryQuery(turns=3).search_text(Query(question, history)))
    assert _rank_of(pasted, "Elias Marrick") != 1


def test_without_history_the_question_goes_straight_to_the_retriever(bundled_bm25):
    search = HistorySearch(retriever=bundled_bm25, top_k=3)
    plain = bundled_bm25.retrieve(["Who founded Varrow Point in 1847?"], top_k=3)[0]
    assert [h.chunk.id for h in search.invoke("Who founded Varrow Point in 1847?")] == [
        h.chunk.id for h in plain
    ]
    # Only the user's turns count: a long assistant answer adds nothing to the search.
    answer_only = Query("Who founded Varrow Point in 1847?", (("assistant", "Brinewell " * 50),))
    assert [h.chunk.id for h in search.invoke(answer_only)] == [h.chunk.id for h in plain]


def test_search_texts_weigh_recent_questions_more(bundled_bm25):
    search = HistorySearch(retriever=bundled_bm25, turns=2, weight=1.0, decay=0.5)
    texts = search.search_texts(Query("q?", _asked("a?", "b?", "c?")))
    assert texts == [("q?", 1.0), ("c?\nq?", 1.0), ("b?\nq?", 0.5)]


@pytest.mark.parametrize(
    ("field", "value"), [("turns", 0), ("weight", -1.0), ("decay", 0.0), ("candidates", 0)]
)
def test_parameters_are_validated(bundled_bm25, field, value):
    with pytest.raises(ValueError, match=rf"{field}\n.*greater than"):
        HistorySearch(retriever=bundled_bm25, **{field: value})


@pytest.fixture(scope="module")
def crud_conversations(crud_rag_dir, repo_root):
    """Real CRUD-RAG factoids over the first 400 articles, as staying and switching
    conversations (the benchmark's construction)."""
    import sys

    from ragkit.eval.crud_rag import answerable_factoids, load_crud_news

    if str(repo_root) not in sys.path:
        sys.path.insert(0, str(repo_root))
    from benchmarks.crud_slices import answer_in_history, conversations, item_questions

    factoids = crud_rag_dir / "qa" / "questanswer_1doc_factoids.json"
    items = answerable_factoids(crud_rag_dir, factoids, 400)
    chunker = TokenChunker(chunk_tokens=254, overlap_tokens=32)
    chunks = [c for d in load_crud_news(crud_rag_dir, 400) for c in chunker.invoke(d)]
    questions = item_questions(factoids)
    kinds = {
        kind: [
            (i, q) for i, q in conversations(items, questions, kind) if not answer_in_history(i, q)
        ]
        for kind in ("single", "switching")
    }
    return BM25Retriever.from_chunks(chunks, top_k=5, terms="words+bigrams"), kinds


def _recall_at(retriever, pairs, k: int) -> float:
    from ragkit.eval.metrics import answer_rank

    found = retriever.retrieve([q for _, q in pairs], top_k=k)
    ranks = [
        answer_rank([h.chunk.text for h in hits], i.references)
        for (i, _), hits in zip(pairs, found, strict=True)
    ]
    return sum(r is not None for r in ranks) / len(ranks)


@pytest.mark.parametrize("kind", ["single", "switching"])
def test_on_real_conversations_history_never_does_worse_than_the_question_alone(
    crud_conversations, kind
):
    bm25, kinds = crud_conversations
    pairs = kinds[kind]
    assert len(pairs) >= 20
    alone = [(i, Query(q.question)) for i, q in pairs]
    search = HistorySearch(retriever=bm25, top_k=5)
    for k in (1, 5):
        # at most one question of these few dozen may go the other way
        assert _recall_at(search, pairs, k) >= _recall_at(bm25, alone, k) - 1.01 / len(pairs)
