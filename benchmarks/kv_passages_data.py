"""Questions, retrievers and prompts shared by the passage KV reuse benchmarks.

- bundled: the 24 read questions of the bundled English suite, retrieved by the `naive`
  pipeline (dense MiniLM over a fresh index of the bundled corpus);
- CRUD-RAG slices: `parts N` = the three `documents_dup_part_N_*` news files; the questions are
  the answerable factoids whose gold article lies in the slice, retrieved by the `best` pipeline
  (BM25 over jieba words and character bigrams, top 5) from an in-memory index of the slice.

Prompts come from the pipeline's own assembler, so they are what `ragkit query` would send.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402
from ragkit.resources import evals_dir  # noqa: E402
from ragkit.types import Prompt, Query  # noqa: E402

CRUD = default_crud_dir(REPO)
FACTOIDS = CRUD / "qa" / "questanswer_1doc_factoids.json"
BUNDLED = evals_dir() / "bundled"


@dataclass(frozen=True)
class Question:
    """One question with its references and the prompt the pipeline builds for it, in each
    layout (`append` is the pipelines' default; `prepend` puts the question after the
    passages)."""

    id: str
    text: str
    references: tuple[str, ...]
    prompts: dict[str, Prompt]
    group: str = ""  # CRUD-RAG: the factoid item (its questions are about one article)


LAYOUTS = ("append", "prepend")


def _prompts(spec: Any, retriever: Any, items: Sequence[Any]) -> list[Question]:
    from ragkit import build

    assemblers = {
        layout: build.prompt_assembler(
            spec.model_copy(update={"prompt": spec.prompt.model_copy(update={"layout": layout})})
        )
        for layout in LAYOUTS
    }
    found = retriever.batch([Query(item.query) for item in items])
    return [
        Question(
            item.id,
            item.query,
            tuple(item.references or (item.reference,)),
            {layout: a.assemble(item.query, hits) for layout, a in assemblers.items()},
            str(item.metadata.get("factoid_id", "")),
        )
        for item, hits in zip(items, found, strict=True)
    ]


def bundled_questions() -> list[Question]:
    """The bundled suite's read questions in file order (q01 ... q24)."""
    from ragkit import build
    from ragkit.eval.datasets import load_qa_jsonl
    from ragkit.retrieval import DenseRetriever
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(tempfile.mkdtemp(prefix="kv-passages-index-"))
    build.ingestor(spec).ingest([str(BUNDLED / "corpus")], progress=False)
    retriever = DenseRetriever(
        store=build.store(spec), embedder=build.embedder(spec), top_k=spec.retriever.top_k
    )
    return _prompts(spec, retriever, load_qa_jsonl(BUNDLED / "questions.jsonl"))


def crud_questions(parts: Sequence[int]) -> list[Question]:
    """A slice's answerable factoid questions, grouped by factoid item, in a fixed order."""
    from benchmarks.crud_slices import slice_dir
    from ragkit import build
    from ragkit.eval.crud_rag import answerable_factoids, load_crud_news
    from ragkit.retrieval.bm25 import BM25Retriever
    from ragkit.spec import load_spec

    if not CRUD.is_dir():
        raise SystemExit(f"{CRUD} is not present")
    spec = load_spec("best")
    folder = slice_dir(CRUD / "news", parts)
    items = answerable_factoids(folder, FACTOIDS)
    chunker = build.chunker(spec)
    chunks = [c for doc in load_crud_news(folder) for c in chunker.invoke(doc)]
    retriever = BM25Retriever.from_chunks(
        chunks, top_k=spec.retriever.top_k, terms=spec.retriever.lexical
    )
    items.sort(key=lambda i: (i.metadata["factoid_id"], i.metadata["question_index"]))
    return _prompts(spec, retriever, items)


def slice_label(parts: Sequence[int]) -> str:
    return "parts " + "+".join(map(str, parts))
