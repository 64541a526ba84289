"""The bundled Varrow Point suite: its files are complete, consistent and answerable."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from ragkit.eval.datasets import load_suite
from ragkit.eval.tasks import TASK_KINDS, cue, instruction


@cache
def corpus_text(path: Path) -> str:
    """The readable text of one corpus file, whitespace collapsed, whatever its format."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    elif suffix == ".html":
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
        for tag in soup(["script", "style", "nav"]):
            tag.decompose()
        text = soup.get_text(" ")
    elif suffix == ".json":
        text = " ".join(r["text"] for r in json.loads(path.read_text(encoding="utf-8")))
    elif suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        text = " ".join(json.loads(line)["text"] for line in lines if line.strip())
    else:
        text = path.read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", text)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def suite():
    return load_suite("bundled")


def test_suite_loads_by_name_with_every_task_kind(suite, bundled_corpus):
    assert suite.name == "bundled"
    assert suite.corpus == bundled_corpus.resolve()
    counts = {kind: len(suite.by_task(kind)) for kind in TASK_KINDS}
    assert counts == {"create": 4, "read": 24, "update": 4, "delete": 3}
    assert len({item.id for item in suite.items}) == len(suite) == 35


def test_corpus_has_the_promised_formats_and_sizes(bundled_corpus):
    files = sorted(p for p in bundled_corpus.iterdir() if p.is_file())
    assert len(files) == 14
    by_suffix = {}
    for path in files:
        by_suffix[path.suffix] = by_suffix.get(path.suffix, 0) + 1
    assert by_suffix[".html"] == 2 and by_suffix[".json"] == 1 and by_suffix[".jsonl"] == 1
    assert by_suffix[".pdf"] == 1 and by_suffix[".md"] + by_suffix[".txt"] == 9
    for path in files:
        words = len(corpus_text(path).split())
        assert 150 <= words <= 650, f"{path.name}: {words} words"
    pdf = bundled_corpus / "harbour-report-2023.pdf"
    assert pdf.stat().st_size < 20_000
    for html in bundled_corpus.glob("*.html"):
        assert re.search(r"<title>[^<]+</title>", html.read_text(encoding="utf-8")), html.name


def test_pdf_rebuilds_byte_for_byte(repo_root, bundled_corpus, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_pdf", repo_root / "evals" / "bundled" / "make_pdf.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rebuilt = module.build(tmp_path / "report.pdf")
    assert rebuilt.read_bytes() == (bundled_corpus / "harbour-report-2023.pdf").read_bytes()


def test_every_gold_source_exists(suite, bundled_corpus):
    for item in suite.items:
        assert item.gold_sources, item.id
        for name in item.gold_sources:
            assert (bundled_corpus / name).is_file(), f"{item.id}: {name}"


def test_every_answer_occurs_verbatim_in_a_gold_source(suite, bundled_corpus):
    for item in suite.by_task("read"):
        texts = [corpus_text(bundled_corpus / name) for name in item.gold_sources]
        assert any(item.reference in text for text in texts), f"{item.id}: {item.reference!r}"
        assert item.references[0] == item.reference


def test_read_questions_cover_one_two_and_three_documents(suite):
    hops = [item.metadata["hops"] for item in suite.by_task("read")]
    assert (hops.count(1), hops.count(2), hops.count(3)) == (14, 6, 4)
    for item in suite.by_task("read"):
        assert len(set(item.gold_sources)) == item.metadata["hops"], item.id


def test_generation_references_come_from_the_corpus(suite, bundled_corpus):
    every_text = [corpus_text(p) for p in sorted(bundled_corpus.iterdir())]
    for item in suite.by_task("create"):
        gold = [corpus_text(bundled_corpus / n) for n in item.gold_sources]
        assert any(squash(item.inputs["beginning"]) in text for text in gold), item.id
        assert any(squash(item.reference) in text for text in gold), item.id
    for item in suite.by_task("update"):
        gold = [corpus_text(bundled_corpus / n) for n in item.gold_sources]
        assert any(squash(item.reference) in text for text in gold), item.id
        wrong = squash(item.inputs["hallucinated"])
        assert wrong != squash(item.reference)
        assert not any(wrong in text for text in every_text), f"{item.id} is not false"
    for item in suite.by_task("delete"):
        assert len(item.gold_sources) >= 2, item.id
        assert 40 <= len(item.reference.split()) <= 200, item.id


def test_every_item_renders_an_english_prompt(suite):
    for item in suite.items:
        text = instruction(item)
        assert item.language == "en"
        assert item.query in text and text.endswith("Documents:\n"), item.id
        assert cue(item).strip().endswith(":")
