"""Hostile and careless inputs: deep HTML, pipes, link loops, files that vanish, missing stores.

Every file is made by the test in a tmp folder. Ingestion must finish quickly, note each file
it skips on one line, show no traceback and lose nothing already stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit.errors import StoreError
from ragkit.index.loaders import LoadIssue, load_documents
from ragkit.index.store import ChromaStore
from ragkit.runlog import read_records
from ragkit.types import Chunk

DEPTH = 200_000


def _deep_html(path: Path, depth: int = DEPTH) -> Path:
    path.write_text(
        "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>",
        encoding="utf-8",
    )
    return path


def _load(*paths: Path):
    issues: list[LoadIssue] = []
    docs = list(load_documents(paths, on_issue=issues.append))
    return docs, issues


def _reasons(issues: list[LoadIssue]) -> dict[str, str]:
    return {Path(i.path).name: i.reason for i in issues}


@pytest.mark.timeout(60)
def test_deeply_nested_html_is_read_in_linear_time(tmp_path):
    page = _deep_html(tmp_path / "deep.html")
    (tmp_path / "drops.html").write_text(
        "<head><title>T</title>" + "<noscript>" * 50_000 + "hidden" + "</style>" * 50_000
        + "</noscript>" * 50_000 + "<body><p>shown</p>",
        encoding="utf-8",
    )  # fmt: skip
    docs, issues = _load(page, tmp_path / "drops.html")
    assert issues == []
    assert [d.text for d in docs] == ["deep text", "shown"]
    assert docs[1].metadata["title"] == "T"


def test_unclosed_head_ends_at_body(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<html><head><title>Kept</title><body><p>Body text</p>", encoding="utf-8")
    (doc,) = load_documents([page])
    assert doc.text == "Body text" and doc.metadata["title"] == "Kept"


@pytest.mark.timeout(60)
def test_fifo_and_other_special_files_are_skipped_unopened(tmp_path):
    import socket

    os.mkfifo(tmp_path / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.md"))
    (tmp_path / "dev.txt").symlink_to("/dev/zero")
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    try:
        docs, issues = _load(tmp_path)
        alone, alone_issues = _load(tmp_path / "pipe.txt")  # named on its own
    finally:
        sock.close()
    assert [d.text for d in docs] == ["fine"]
    assert _reasons(issues) == {
        "pipe.txt": "not a regular file (a named pipe (FIFO))",
        "sock.md": "not a regular file (a socket)",
        "zero": "not a regular file (a character device)",
    }
    assert alone == [] and len(alone_issues) == 1


def test_symlink_loops_broken_links_and_extensionless_targets(tmp_path):
    (tmp_path / "loop1.txt").symlink_to(tmp_path / "loop2.txt")
    (tmp_path / "loop2.txt").symlink_to(tmp_path / "loop1.txt")
    (tmp_path / "broken.md").symlink_to(tmp_path / "nowhere.md")
    data = tmp_path / "store" / "NOTES"
    data.parent.mkdir()
    data.write_text("Read through the link.", encoding="utf-8")
    (tmp_path / "notes.txt").symlink_to(data)
    (tmp_path / "page.html").write_text("<p>plain</p>", encoding="utf-8")

    docs, issues = _load(tmp_path)

    assert [d.text for d in docs] == ["Read through the link.", "plain"]
    linked = docs[0]
    assert linked.metadata["format"] == "text" and linked.metadata["file_name"] == "notes.txt"
    assert linked.source == str(data.resolve())
    assert _reasons(issues) == {
        "broken.md": "broken symbolic link (its target does not exist)",
        "loop1.txt": "symbolic link loop",
        "loop2.txt": "symbolic link loop",
    }


def test_file_deleted_while_loading_is_reported_and_loading_goes_on(tmp_path):
    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}", encoding="utf-8")
    issues: list[LoadIssue] = []
    docs = load_documents([tmp_path], on_issue=issues.append)
    first = next(docs)  # the folder is listed now; delete files it has not read yet
    for i in (3, 4, 7):
        (tmp_path / f"f{i}.txt").unlink()
    rest = list(docs)
    assert [d.text for d in [first, *rest]] == [f"file {i}" for i in (0, 1, 2, 5, 6, 8, 9)]
    assert _reasons(issues) == dict.fromkeys(
        ("f3.txt", "f4.txt", "f7.txt"), "vanished before it could be read"
    )


@pytest.mark.slow
def test_ingest_goes_on_when_files_vanish_mid_run(tmp_path, embedder):
    from ragkit.index.chunking import TokenChunker
    from ragkit.index.ingest import Ingestor

    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(199):
        (corpus / f"d{i:03d}.txt").write_text(f"Document {i} is about topic {i}.", "utf-8")
    doomed = sorted(corpus.iterdir())[-64:]

    class DeletingStore(ChromaStore):
        def upsert(self, chunks, vectors):
            super().upsert(chunks, vectors)
            for path in doomed:
                path.unlink(missing_ok=True)

    store = DeletingStore(tmp_path / "idx", embedding_model=embedder.model_name)
    chunker = TokenChunker(tokenizer=embedder.tokenizer, chunk_tokens=48, overlap_tokens=8)
    report = Ingestor(store, embedder, chunker, batch_size=8, doc_batch_size=4).ingest(
        corpus, progress=False
    )
    vanished = {Path(i.path).name for i in report.issues}
    assert vanished and vanished <= {p.name for p in doomed}
    assert {i.reason for i in report.issues} == {"vanished before it could be read"}
    assert report.documents_added == 199 - len(vanished)
    stored = store.documents()
    assert len(stored) == report.documents_added and all(d.complete for d in stored.values())
    assert store.count() == report.chunks_added == sum(d.chunks for d in stored.values())


@pytest.mark.slow
def test_cli_ingest_of_a_hostile_folder_notes_each_file_and_keeps_the_rest(tmp_path, repo_root):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("The ferry company was founded in 1962.", encoding="utf-8")
    _deep_html(corpus / "deep.html")
    os.mkfifo(corpus / "pipe.txt")
    (corpus / "loop1.txt").symlink_to(corpus / "loop2.txt")
    (corpus / "loop2.txt").symlink_to(corpus / "loop1.txt")
    (tmp_path / "README").write_text("Linked notes without an extension.", encoding="utf-8")
    (corpus / "notes.txt").symlink_to(tmp_path / "README")
    (corpus / "broken.md").symlink_to(corpus / "gone.md")
    store = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(repo_root), "HF_HUB_OFFLINE": "1"}
    env.pop("RAGKIT_DEBUG", None)

    def ingest() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ragkit.cli", "ingest", str(corpus), "--store", str(store)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,  # a hang (the pipe, the deep page) fails here instead of forever
        )

    first = ingest()
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr + first.stdout
    notes = [line for line in first.stderr.splitlines() if line.startswith("skipped ")]
    assert sorted(Path(n.split(": ")[0].removeprefix("skipped ")).name for n in notes) == [
        "broken.md",
        "loop1.txt",
        "loop2.txt",
        "pipe.txt",
    ]
    assert "3 added" in first.stdout
    sources = {Path(r.source).name for r in ChromaStore(store).documents().values()}
    assert sources == {"good.txt", "deep.html", "README"}

    again = ingest()  # the same folder again: nothing lost, nothing rewritten
    assert again.returncode == 0 and "3 unchanged" in again.stdout
    assert {Path(r.source).name for r in ChromaStore(store).documents().values()} == sources


def test_query_never_creates_a_store_and_an_empty_one_is_an_error(tmp_path):
    missing = tmp_path / "never-ingested"
    store = ChromaStore(missing, embedding_model="toy")
    with pytest.raises(StoreError, match=r"no index at .*never-ingested.*ragkit ingest"):
        store.query(np.array([1.0, 0.0]))
    assert store.count() == 0 and store.documents() == {} and store.get_chunks() == []
    assert not missing.exists()

    chunk = Chunk(id="d:00000", doc_id="d", text="x", start=0, end=1, metadata={"source": "s"})
    store.upsert([chunk], np.array([[1.0, 0.0]]))
    assert [h.chunk.id for h in store.query(np.array([1.0, 0.0]))[0]] == ["d:00000"]
    assert store.query(np.array([1.0, 0.0]), where={"source": "other"}) == [[]]
    store.delete_documents(["d"])
    with pytest.raises(StoreError, match=r"index at .*never-ingested.*is empty.*ragkit ingest"):
        store.query(np.array([1.0, 0.0]))
    other = ChromaStore(missing, collection="other")
    with pytest.raises(StoreError, match=r"collection 'other'.*ragkit ingest"):
        other.query(np.array([1.0, 0.0]))
    assert [c.name for c in other.collections()] == ["ragkit"]


def test_retrievers_refuse_a_missing_index(tmp_path, embedder):
    from ragkit import build
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(str(tmp_path / "nothing-here"))
    build.register_embedder(spec.embedder, embedder)
    for kind in ("dense", "bm25", "hybrid"):
        kinded = spec.model_copy(
            update={"retriever": spec.retriever.model_copy(update={"kind": kind})}
        )
        with pytest.raises(StoreError, match=r"nothing-here.*run `ragkit ingest"):
            build.retriever(kinded).invoke("When was the ferry company founded?")
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.slow
def test_cli_query_against_a_missing_or_empty_store_is_one_line(tmp_path, bundled_spec):
    from typer.testing import CliRunner

    from ragkit.cli import app

    cli = CliRunner()
    missing = tmp_path / "missing"
    result = cli.invoke(app, ["query", "When was it founded?", "--store", str(missing)])
    assert result.exit_code == 1
    assert "no index at" in result.output and "ragkit ingest" in result.output
    assert "Traceback" not in result.output and not missing.exists()

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The ferry company was founded in 1962.", encoding="utf-8")
    emptied = str(tmp_path / "emptied")
    assert cli.invoke(app, ["ingest", str(corpus), "--store", emptied]).exit_code == 0
    assert cli.invoke(app, ["ingest", str(corpus), "--store", emptied, "--delete"]).exit_code == 0
    result = cli.invoke(app, ["query", "When was it founded?", "--store", emptied])
    assert result.exit_code == 1 and "is empty" in result.output, result.output
    assert "ragkit ingest" in result.output and "1901" not in result.output


def test_run_folder_lines_that_are_not_records_are_recomputed(tmp_path):
    path = tmp_path / "items.jsonl"
    good = {"pipeline": "a", "item_id": "1"}
    path.write_text(
        json.dumps(good) + '\n123\n[1, 2]\n"text"\nnull\n{"pipeline": "a"}\n{"pipeline": "a", "it'
    )
    assert read_records(path, required=("pipeline", "item_id")) == [good]
    assert path.read_text() == json.dumps(good) + "\n"


def test_deeply_nested_json_is_refused_with_a_note(tmp_path):
    deep = "[" * DEPTH + "]" * DEPTH
    (tmp_path / "deep.json").write_text(deep, encoding="utf-8")
    (tmp_path / "lines.jsonl").write_text(deep + '\n{"text": "kept"}\n', encoding="utf-8")
    docs, issues = _load(tmp_path)
    assert [d.text for d in docs] == ["kept"]
    assert sorted((Path(i.path).name, i.reason) for i in issues) == [
        ("deep.json", "nested too deeply to parse"),
        ("lines.jsonl", "line 1: nested too deeply to parse"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_folder_is_noted_and_the_rest_loads(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "secret.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / "open.txt").write_text("visible", encoding="utf-8")
    locked.chmod(0)
    try:
        docs, issues = _load(tmp_path)
    finally:
        locked.chmod(0o755)
    assert [d.text for d in docs] == ["visible"]
    assert [(Path(i.path).name, i.reason) for i in issues] == [
        ("locked", "unreadable folder: Permission denied")
    ]


def test_info_and_delete_on_a_missing_store_create_nothing(tmp_path):
    from typer.testing import CliRunner

    from ragkit.cli import app

    missing = tmp_path / "none"
    (tmp_path / "a.txt").write_text("text", encoding="utf-8")
    cli = CliRunner()
    info = cli.invoke(app, ["info", "--store", str(missing)])
    assert info.exit_code == 0 and f"store: {missing}" in info.output
    assert "chunks, embeddings by" not in info.output
    gone = cli.invoke(app, ["ingest", str(tmp_path / "a.txt"), "--store", str(missing), "--delete"])
    assert gone.exit_code == 0 and "0 deleted" in gone.output
    assert not missing.exists()
