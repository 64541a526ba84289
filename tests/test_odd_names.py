"""File names that are not valid UTF-8, or hold newlines, emoji or backslashes, or are as long as
a name may be: stored in a printable form that maps back to the file, ingested beside good
files, noted in one line, and found unchanged on the next run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit import build
from ragkit.errors import StoreError
from ragkit.index.chunking import TokenChunker
from ragkit.index.ingest import Ingestor
from ragkit.index.loaders import LoadIssue, load_documents
from ragkit.index.sources import real_source, stored_source
from ragkit.index.store import ChromaStore, chunk_to_record
from ragkit.spec import load_spec
from ragkit.types import Chunk

NAME_MAX = os.pathconf("/", "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
# A name of exactly NAME_MAX bytes, most of them not UTF-8.
LONG = b"long-" + b"\xfe" * (NAME_MAX - len(b"long-.txt")) + b".txt"
ODD = {
    b"bad\xff.txt": "a harbour pilot named Ines",
    b"line\nbreak.txt": "a lighthouse keeper named Odo",
    "emoji \U0001f600 notes.md".encode(): "a canal boat called Petrel",
    b"back\\slash \xe9.txt": "a bakery on Quay Street",
    LONG: "a tram depot at Norrow",
}


def _write(folder: Path, name: bytes, text: str) -> bytes:
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as handle:
        handle.write(text.encode("utf-8"))
    return path


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("The ferry to Varrow leaves at noon.", encoding="utf-8")
    for name, text in ODD.items():
        _write(folder, name, f"This file is about {text}.")
    return folder


@pytest.mark.parametrize("name", [*ODD, b"lit\\xff.txt", b"tab\there\x7f", "a\u2028b".encode()])
def test_stored_form_is_printable_and_maps_back_to_the_bytes(name: bytes):
    path = "/data/" + os.fsdecode(name)
    stored = stored_source(path)
    assert stored.isprintable()
    stored.encode("utf-8")  # what chroma needs
    assert real_source(stored) == path
    assert os.fsencode(real_source(stored)) == b"/data/" + name
    assert stored_source(path) == stored  # the same on every run


def test_valid_names_are_stored_as_they_are_and_no_two_names_share_a_form():
    for plain in ("/data/good.txt", "/data/emoji \U0001f600.md", "/data/中文 报告.txt"):
        assert stored_source(plain) == plain == real_source(plain)
    # a name that literally reads `\xff` is not the name holding the byte 0xff
    literal, byte = os.fsdecode(b"/d/lit\\xff"), os.fsdecode(b"/d/lit\xff")
    assert stored_source(literal) != stored_source(byte)
    assert real_source(stored_source(literal)) == literal


def test_loader_stores_odd_names_escaped_and_notes_each(corpus: Path):
    issues: list[LoadIssue] = []
    docs = list(load_documents([corpus], on_issue=issues.append))
    assert len(docs) == len(ODD) + 1
    for doc in docs:
        assert doc.source.isprintable() and doc.metadata["file_name"].isprintable()
        assert os.path.exists(os.fsencode(real_source(doc.source)))
    assert all(not i.skipped for i in issues)
    bad = next(i for i in issues if Path(i.path).name.startswith("bad"))
    assert bad.path.endswith("/bad\\xff.txt") and "not UTF-8" in bad.reason
    newline = next(i for i in issues if Path(i.path).name.startswith("line"))
    assert newline.path.endswith("/line\\nbreak.txt") and "control character" in newline.reason
    # valid names, emoji included, load without a note
    assert len(issues) == 4 and not any("emoji" in i.path for i in issues)


def test_an_odd_name_that_cannot_be_read_is_only_skipped(tmp_path: Path):
    _write(tmp_path, b"binary\xff.txt", "\x00\x01 not text")
    issues: list[LoadIssue] = []
    assert list(load_documents([tmp_path], on_issue=issues.append)) == []
    assert [(Path(i.path).name, i.reason, i.skipped) for i in issues] == [
        ("binary\\xff.txt", "binary or undecodable", True)
    ]


def test_record_text_that_is_not_unicode_is_skipped_not_fatal(tmp_path: Path):
    path = tmp_path / "records.jsonl"
    lines = [{"text": "fine record"}, {"text": "broken \ud800 record"}, {"text": "also fine"}]
    path.write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    issues: list[LoadIssue] = []
    docs = list(load_documents([path], on_issue=issues.append))
    assert [d.text for d in docs] == ["fine record", "also fine"]
    assert [i.reason for i in issues] == [
        "line 2: 'text' is not valid Unicode (a lone surrogate at character 7)"
    ]


def test_store_refuses_unstorable_metadata_in_one_line():
    chunk = Chunk("c1", "d1", "text", 0, 4, {"source": "/d/bad\udcff.txt"})
    with pytest.raises(StoreError, match=r"chunk 'c1': metadata 'source' is not valid Unicode"):
        chunk_to_record(chunk)


def test_ingest_writes_every_file_and_a_rerun_is_a_no_op(tmp_path, corpus, embedder):
    store = ChromaStore(tmp_path / "idx", embedding_model=embedder.model_name)
    chunker = TokenChunker(tokenizer=embedder.tokenizer, chunk_tokens=64, overlap_tokens=8)
    ingestor = Ingestor(store, embedder, chunker)
    first = ingestor.ingest([corpus], progress=False)
    assert first.documents_added == len(ODD) + 1 and not first.issues
    assert len(first.notes) == 4
    stored = {r.source: r for r in store.documents().values()}
    assert all(os.path.isfile(os.fsencode(real_source(s))) for s in stored)
    chunks_before = set(store.chunk_ids())

    again = ingestor.ingest([corpus], progress=False)
    assert again.documents_unchanged == len(ODD) + 1
    assert again.documents_added == again.chunks_added == again.documents_replaced == 0
    assert {r.source for r in store.documents().values()} == set(stored)
    assert set(store.chunk_ids()) == chunks_before

    # a changed odd file replaces its old version, and deleting it by its real path works
    bad = os.path.join(os.fsencode(corpus), b"bad\xff.txt")
    with open(bad, "wb") as handle:
        handle.write(b"This file is now about a ferry named Solace.")
    changed = ingestor.ingest([corpus], progress=False)
    assert changed.documents_replaced == 1 and changed.documents_unchanged == len(ODD)
    assert len(store.documents()) == len(ODD) + 1
    gone = ingestor.ingest([os.fsdecode(bad)], progress=False, delete=True)
    assert gone.documents_deleted == 1
    assert not any("bad" in r.source for r in store.documents().values())


def test_cli_ingests_the_folder_with_one_line_per_odd_name_and_shows_it(tmp_path, corpus, embedder):
    from ragkit.cli import app

    spec = load_spec("naive")
    build.register_embedder(spec.embedder, embedder)
    store = str(tmp_path / "idx")
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(corpus), "--store", store])
    assert first.exit_code == 0, first.output
    assert "Traceback" not in first.output and f"{len(ODD) + 1} added" in first.output
    notes = [line for line in first.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 4
    assert any("/bad\\xff.txt: name holds bytes that are not UTF-8" in line for line in notes)

    again = runner.invoke(app, ["ingest", str(corpus), "--store", store])
    assert again.exit_code == 0 and f"{len(ODD) + 1} unchanged" in again.output
    assert "0 chunks written" in again.output

    scripted = tmp_path / "bm25.yaml"
    scripted.write_text(
        "retriever: {kind: bm25, top_k: 1}\ngenerator: {kind: scripted}\n", encoding="utf-8"
    )
    found = runner.invoke(
        app, ["query", "Who is the harbour pilot?", "-p", str(scripted), "--store", store]
    )
    assert found.exit_code == 0, found.output
    # Shown relative to the ingested folder, as the server shows it (rich wraps at 80).
    assert "] bad\\xff.txt chars" in found.output.replace("\n", "")
    as_json = runner.invoke(
        app,
        ["query", "lighthouse keeper Odo", "-p", str(scripted), "--store", store, "--json"],
    )
    record = json.loads(as_json.output.strip().splitlines()[-1])
    assert record["retrieved"][0]["source"].endswith("/line\\nbreak.txt")


def test_ray_workers_get_printable_paths_and_send_notes_back(corpus, embedder):
    """Ray Data carries paths as Arrow strings, which must be valid UTF-8: the driver lists
    stored forms and a worker opens the real file behind each (no cluster needed for this)."""
    from ragkit.distributed.ray_ingest import _files
    from ragkit.distributed.ray_tasks import CHUNK, NOTE, load_and_chunk

    spec = load_spec("naive")
    build.register_embedder(spec.embedder, embedder)
    files = _files([corpus])
    assert len(files) == len(ODD) + 1 and all(f.isprintable() for f in files)
    bad = next(f for f in files if f.endswith("/bad\\xff.txt"))
    rows = load_and_chunk({"path": bad, "document": b""}, spec=spec, skip=frozenset())
    assert [r["kind"] for r in rows if r["kind"] != CHUNK] == [NOTE]
    assert {r["source"] for r in rows} == {bad}
    assert any("harbour pilot" in r["text"] for r in rows if r["kind"] == CHUNK)


@pytest.mark.slow
def test_the_real_model_answers_from_an_odd_named_file_and_cites_it(
    tmp_path, corpus, embedder, local_generator
):
    from ragkit.cli import app

    spec = load_spec("naive").with_store(str(tmp_path / "idx"))
    build.register_embedder(spec.embedder, embedder)
    build.register_generator(spec.generator, local_generator)
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(corpus), "--store", spec.store.location])
    assert ingested.exit_code == 0, ingested.output
    answered = runner.invoke(
        app,
        ["query", "Who is the harbour pilot?", "--store", spec.store.location, "-k", "1"],
    )
    assert answered.exit_code == 0, answered.output
    shown = answered.output.replace("\n", "")
    assert "] bad\\xff.txt chars" in shown and "Traceback" not in shown
    answer = re.split(r"\n  [ *~]\[1\] ", answered.output)[0]  # before the sources list
    assert "Ines" in answer
