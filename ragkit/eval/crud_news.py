"""The `crud-news` suite: CRUD-RAG's Create and Read tasks built at load time from the real news
in a CRUD-RAG data folder (nothing is copied into the project).

- Create (news continuation): an article's opening is the input, its own rest the reference,
  and retrieval runs over the rest of the corpus: the article and every near-copy of its
  continuation are left out of the index, so the answer cannot be looked up.
- Read (question answering): CRUD-RAG's 1-document factoid questions that an article in the
  indexed corpus answers, with their reference answers and gold articles
  (`ragkit.eval.crud_rag.answerable_factoids`).

CRUD-RAG's Update (hallucination correction), Delete (multi-document summary) and 2- and
3-document Read items need files this data does not have; they are not built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragkit.eval.crud_rag import answerable_factoids, articles_containing, load_crud_news
from ragkit.eval.datasets import Suite
from ragkit.eval.tasks import EvalItem, create_item
from ragkit.text import sentence_spans
from ragkit.types import Document

SUITE = "crud-news"
FACTOID_FILE = Path("qa") / "questanswer_1doc_factoids.json"
MIN_PART_CHARS = 120  # shortest opening and continuation kept
MIN_SENTENCES = 4
WINDOW_CHARS = 20  # a continuation's near-copy shares one of its windows this long verbatim
WINDOWS = (0.2, 0.5, 0.8)  # where in the continuation the windows are taken


@dataclass(frozen=True, slots=True)
class NewsSplit:
    """An article cut at the sentence boundary nearest its middle."""

    doc: Document
    beginning: str
    continuing: str

    def windows(self) -> list[str]:
        text = self.continuing
        starts = {int(at * (len(text) - WINDOW_CHARS)) for at in WINDOWS}
        return [text[s : s + WINDOW_CHARS] for s in sorted(starts) if s >= 0]


def split_article(doc: Document) -> NewsSplit | None:
    """The article's opening and continuation, split between sentences so each half is about as
    long as the other (CRUD-RAG asks for a continuation about as long as the opening); None
    when the article is too short or has too few sentences to split."""
    text = doc.text.strip()
    spans = sentence_spans(text)
    if len(spans) < MIN_SENTENCES:
        return None
    cut = min((end for _, end in spans[:-1]), key=lambda end: abs(end - len(text) / 2))
    beginning, continuing = text[:cut].strip(), text[cut:].strip()
    if min(len(beginning), len(continuing)) < MIN_PART_CHARS:
        return None
    return NewsSplit(doc, beginning, continuing)


def _order(doc_id: str) -> str:
    """A fixed pseudo-random order, so Create items spread over the corpus, not its first file."""
    return hashlib.sha1(doc_id.encode()).hexdigest()


def continuation_items(
    docs: Sequence[Document], keep: set[str], max_items: int
) -> tuple[list[EvalItem], set[str]]:
    """Create items from `docs`, and the ids to leave out of the index for them.

    An article becomes an item when neither it nor any near-copy of its continuation is in
    `keep` (articles other items need, such as Read items' gold sources).
    """
    candidates = []
    for doc in sorted(docs, key=lambda d: _order(d.id)):
        if doc.id in keep:
            continue
        split = split_article(doc)
        if split is not None:
            candidates.append(split)
        if len(candidates) >= 2 * max_items:
            break
    texts = [d.text for d in docs]
    found = articles_containing(texts, {w for c in candidates for w in c.windows()})
    items: list[EvalItem] = []
    excluded: set[str] = set()
    for split in candidates:
        copies = {docs[i].id for w in split.windows() for i in found.get(w, ())} | {split.doc.id}
        if copies & keep or split.doc.id in excluded:
            continue
        excluded |= copies
        items.append(
            create_item(
                f"continue/{split.doc.id}",
                split.beginning,
                split.continuing,
                metadata={
                    "source": split.doc.id,
                    "date": split.doc.metadata.get("date", ""),
                    "left_out_of_index": sorted(copies),
                },
            )
        )
        if len(items) >= max_items:
            break
    return items, excluded


def build_crud_news(
    root: Path, *, articles: int | None, max_create: int = 200
) -> tuple[Suite, Callable[[], Iterator[Document]]]:
    """The suite over the first `articles` news articles (all when None), and a callable that
    yields the documents to index: those articles less the Create items' own and near-copies."""
    news = root / "news"
    reads = answerable_factoids(news, root / FACTOID_FILE, max_articles=articles)
    docs = list(load_crud_news(news, limit=articles))
    gold = {s for item in reads for s in item.gold_sources}
    # a tenth of the corpus at most, so continuations leave most of it to retrieve from
    creates, excluded = continuation_items(docs, gold, min(max_create, len(docs) // 10))
    name = f"{SUITE}-{articles if articles is not None else 'all'}"
    suite = Suite(name=name, items=(*creates, *reads), corpus=None, path=root)

    def documents() -> Iterator[Document]:
        return (d for d in load_crud_news(news, limit=articles) if d.id not in excluded)

    return suite, documents
