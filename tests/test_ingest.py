"""Ingestion: idempotent re-runs, replacement, deletion, resuming a killed run, a chroma server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import chroma_server

from ragkit.index.chunking import TokenChunker
from ragkit.index.ingest import Ingestor
from ragkit.index.store import ChromaStore
from ragkit.retrieval import DenseRetriever

WORDS = (  # noqa: SIM905
    "river mountain city harbour engine library garden market winter summer festival bridge "
    "railway school museum orchestra farmer doctor pilot teacher painter council storm forest "
    "island valley bakery factory stadium hospital theatre village canal lighthouse"
).split()
CHUNK_TOKENS, OVERLAP = 48, 8


def _article(seed: int, sentences: int = 12) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        a, b, c = rng.sample(WORDS, 3)
        lines.append(
            f"The {a} near the {b} was visited by a {c} in year {rng.randint(1800, 2020)}."
        )
    return " ".join(lines)


def _write_corpus(root: Path, n: int, sentences: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"doc{i:03d}.txt").write_text(_article(i, sentences), encoding="utf-8")
    return root


def _ingestor(store: ChromaStore, embedder, batch_size: int = 32) -> Ingestor:
    chunker = TokenChunker(
        tokenizer=embedder.tokenizer, chunk_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP
    )
    return Ingestor(store, embedder, chunker, batch_size=batch_size)


def _snapshot(store: ChromaStore) -> tuple[set[str], dict[str, tuple[str, int, bool]]]:
    docs = {d.doc_id: (d.source, d.chunks, d.complete) for d in store.documents().values()}
    return set(store.chunk_ids()), docs


def test_reingest_skips_unchanged_replaces_changed_and_deletes(tmp_path, embedder):
    corpus = _write_corpus(tmp_path / "docs", 6)
    (corpus / "empty.txt").write_text("   \n", encoding="utf-8")
    store = ChromaStore(tmp_path / "chroma", embedding_model=embedder.model_name)
    ingestor = _ingestor(store, embedder)

    first = ingestor.ingest(corpus, progress=False)
    assert (first.documents_added, first.documents_unchanged, first.documents_replaced) == (6, 0, 0)
    assert first.chunks_added == store.count() > 6
    assert [Path(i.path).name for i in first.issues] == ["empty.txt"]
    ids_before, docs_before = _snapshot(store)
    assert all(complete for _, _, complete in docs_before.values())
    assert sum(n for _, n, _ in docs_before.values()) == store.count()

    again = ingestor.ingest(corpus, progress=False)
    assert (again.documents_added, again.documents_unchanged, again.chunks_added) == (0, 6, 0)
    assert _snapshot(store) == (ids_before, docs_before)

    changed = corpus / "doc002.txt"
    old_ids = {d for d, (src, _, _) in docs_before.items() if src == str(changed.resolve())}
    changed.write_text("The lighthouse keeper painted the harbour wall blue.", encoding="utf-8")
    replaced = ingestor.ingest(corpus, progress=False)
    assert (replaced.documents_replaced, replaced.documents_unchanged) == (1, 5)
    assert replaced.chunks_added == 1
    ids_after, docs_after = _snapshot(store)
    assert not any(cid.split(":")[0] in old_ids for cid in ids_after)
    assert len(ids_after) == len(ids_before) - docs_before[old_ids.pop()][1] + 1
    # The random articles share words with the question, so the new chunk is looked for among
    # the top few rather than at rank one (chroma's index is approximate after deletions).
    hits = DenseRetriever(store, embedder, top_k=5).invoke("Who painted the harbour wall?")
    assert (str(changed.resolve()), changed.read_text(encoding="utf-8")) in {
        (h.chunk.source, h.chunk.text) for h in hits
    }

    gone = corpus / "doc004.txt"
    gone.unlink()
    deleted = ingestor.ingest(gone, delete=True)
    assert deleted.documents_deleted == 1
    assert str(gone.resolve()) not in store.sources()
    assert len(store.sources()) == 5
    everything = ingestor.ingest(corpus, delete=True)
    assert everything.documents_deleted == 5 and store.count() == 0


def test_filters_reach_ingested_metadata(tmp_path, embedder):
    corpus = _write_corpus(tmp_path / "docs", 3)
    store = ChromaStore(tmp_path / "chroma", embedding_model=embedder.model_name)
    _ingestor(store, embedder).ingest(corpus, progress=False)
    only = str((corpus / "doc001.txt").resolve())
    dense = DenseRetriever(store, embedder, top_k=50)
    from ragkit.types import Query

    hits = dense.invoke(Query("river", filters={"source": only}))
    assert hits and {h.chunk.source for h in hits} == {only}


INGEST_SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    import threading

    from ragkit.index.chunking import TokenChunker
    from ragkit.embedding import Embedder
    from ragkit.index.ingest import Ingestor
    from ragkit.index.store import ChromaStore

    HOLD_AFTER = int(sys.argv[3])  # writes after which the writer waits for the parent
    interrupted = threading.Event()


    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt


    signal.signal(signal.SIGINT, on_sigint)


    class AnnouncingStore(ChromaStore):
        \"\"\"Announces each write; after `HOLD_AFTER` of them it holds the writer thread until
        the main thread has taken Ctrl-C, so the parent acts while the run is mid-way.\"\"\"

        writes = 0

        def upsert(self, chunks, vectors):
            super().upsert(chunks, vectors)
            AnnouncingStore.writes += 1
            print("wrote", len(chunks), flush=True)
            if AnnouncingStore.writes == HOLD_AFTER:
                interrupted.wait()


    embedder = Embedder()
    store = AnnouncingStore(sys.argv[2], embedding_model=embedder.model_name)
    chunker = TokenChunker(tokenizer=embedder.tokenizer, chunk_tokens={ct}, overlap_tokens={ov})
    ingestor = Ingestor(store, embedder, chunker, batch_size=8{extra})
    report = ingestor.ingest(sys.argv[1], progress=False)
    print("done", report.interrupted, report.chunks_added, flush=True)
    """
)
"""An ingestion in a child process (argv: corpus, store, writes to hold after) that prints a
line per batch written and holds its writer after the given number of writes until it is
interrupted; a SIGKILL then lands mid-run, and a SIGINT is taken before the run can finish."""
KILLED_RUN = INGEST_SCRIPT.format(ct=CHUNK_TOKENS, ov=OVERLAP, extra="")


def start_ingestion(script: str, corpus: Path, store: Path, hold_after: int, repo_root: Path):
    path = store.parent / f"{store.name}-run.py"
    path.write_text(script, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(repo_root), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(path), str(corpus), str(store), str(hold_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def kill_after_writes(script: str, corpus: Path, store: Path, writes: int, repo_root: Path) -> None:
    """Runs an ingestion `script` in a child process and SIGKILLs it while its writer is held
    right after its `writes`-th write, so the kill always lands before the run can finish."""
    proc = start_ingestion(script, corpus, store, writes, repo_root)
    seen = 0
    try:
        for line in proc.stdout:
            assert not line.startswith("done"), "ingestion finished before it could be killed"
            if line.startswith("wrote"):
                seen += 1
                if seen == writes:
                    break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert seen == writes, f"the run ended after {seen} writes, before the kill"


@pytest.mark.slow
def test_killed_ingestion_resumes_without_duplicates_or_losses(tmp_path, embedder, repo_root):
    corpus = _write_corpus(tmp_path / "docs", 24, sentences=30)
    kill_after_writes(KILLED_RUN, corpus, tmp_path / "killed", 2, repo_root)

    killed = ChromaStore(tmp_path / "killed", embedding_model=embedder.model_name)
    partial = killed.count()
    assert partial > 0
    resumed = _ingestor(killed, embedder).ingest(corpus, progress=False)
    assert resumed.documents_added + resumed.documents_unchanged == 24
    assert resumed.documents_added > 0

    clean = ChromaStore(tmp_path / "clean", embedding_model=embedder.model_name)
    _ingestor(clean, embedder).ingest(corpus, progress=False)
    assert _snapshot(killed) == _snapshot(clean)
    assert killed.count() == clean.count() > partial
    assert killed.get_chunks() == clean.get_chunks()


@pytest.mark.slow
def test_ctrl_c_stops_after_the_current_batch_keeping_what_was_written(
    tmp_path, embedder, repo_root
):
    corpus = _write_corpus(tmp_path / "docs", 24, sentences=30)
    proc = start_ingestion(KILLED_RUN, corpus, tmp_path / "stopped", 1, repo_root)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("wrote"):  # the writer now waits until Ctrl-C is taken
                proc.send_signal(signal.SIGINT)
                break
        lines += [line.strip() for line in proc.stdout]
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    written = sum(int(line.split()[1]) for line in lines if line.startswith("wrote"))
    assert lines[-1] == f"done True {written}"
    store = ChromaStore(tmp_path / "stopped", embedding_model=embedder.model_name)
    assert store.count() == written
    stored = set(store.chunk_ids())
    complete = [d for d in store.documents().values() if d.complete]
    assert len(complete) < 24
    for doc in complete:
        assert {f"{doc.doc_id}:{i:05d}" for i in range(doc.chunks)} <= stored


@pytest.mark.slow
def test_ingest_and_query_through_a_chroma_server(tmp_path, embedder):
    with chroma_server(tmp_path / "server") as url:
        corpus = _write_corpus(tmp_path / "docs", 3)
        (corpus / "tower.txt").write_text(
            "The Eiffel Tower was finished in 1889.", encoding="utf-8"
        )
        store = ChromaStore(url, collection="served", embedding_model=embedder.model_name)
        report = _ingestor(store, embedder).ingest(corpus, progress=False)
        assert report.documents_added == 4 and store.count() == report.chunks_added
        again = ChromaStore(url, collection="served").documents()
        assert len(again) == 4 and all(d.complete for d in again.values())
        hits = DenseRetriever(store, embedder, top_k=1).invoke("When was the Eiffel Tower built?")
        assert hits[0].chunk.text == "The Eiffel Tower was finished in 1889."


def _long_text(sentences: int) -> str:
    return _article(7, sentences) + "\n\n" + _article(8, sentences)


def test_long_documents_are_chunked_in_pieces_with_stable_ids(embedder):
    from ragkit.index.chunk_stream import chunk_pieces
    from ragkit.types import Document

    chunker = TokenChunker(
        tokenizer=embedder.tokenizer, chunk_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP
    )
    doc = Document(id="long", text=_long_text(200), metadata={"source": "/x/long.txt"})
    pieces = list(chunk_pieces(chunker, doc, piece_chars=3000))
    chunks = [c for piece in pieces for c in piece]
    assert len(pieces) > 5 and all(pieces)
    assert [c.id for c in chunks] == [f"long:{i:05d}" for i in range(len(chunks))]
    assert [c.metadata["chunk_index"] for c in chunks] == list(range(len(chunks)))
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert doc.text[after.start : after.end] == after.text
        assert before.start < after.start <= before.end  # overlap carries across seams
    assert chunks[0].start == 0 and chunks[-1].end == len(doc.text.rstrip())
    assert [c for p in chunk_pieces(chunker, doc, piece_chars=3000) for c in p] == chunks
    # A document no longer than one piece is chunked exactly as a whole.
    assert list(chunk_pieces(chunker, doc, piece_chars=len(doc.text))) == [chunker.invoke(doc)]


LONG_RUN = INGEST_SCRIPT.format(ct=CHUNK_TOKENS, ov=OVERLAP, extra=", piece_chars=3000")


@pytest.mark.slow
def test_killed_long_document_resumes_inside_it(tmp_path, embedder, repo_root):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "long.txt").write_text(_long_text(120), encoding="utf-8")
    kill_after_writes(LONG_RUN, corpus, tmp_path / "killed", 4, repo_root)

    killed = ChromaStore(tmp_path / "killed", embedding_model=embedder.model_name)
    partial = killed.count()
    (record,) = killed.documents().values()
    assert partial >= 32 and not record.complete

    def ingestor(store: ChromaStore) -> Ingestor:
        chunker = TokenChunker(
            tokenizer=embedder.tokenizer, chunk_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP
        )
        return Ingestor(store, embedder, chunker, batch_size=8, piece_chars=3000)

    resumed = ingestor(killed).ingest(corpus, progress=False)
    clean = ChromaStore(tmp_path / "clean", embedding_model=embedder.model_name)
    whole = ingestor(clean).ingest(corpus, progress=False)
    assert resumed.documents_added == 1
    assert resumed.chunks_reused == partial  # the first part is not embedded again
    assert resumed.chunks_added == whole.chunks_added - partial > 0
    assert _snapshot(killed) == _snapshot(clean)
    assert killed.get_chunks() == clean.get_chunks()
